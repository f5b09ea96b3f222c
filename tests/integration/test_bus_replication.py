"""Replication: a three-node NATS cluster of the test's own, R3, one node SIGKILLed mid-stream.

Three ``nats-server`` processes joined by cluster routes (free ports, their own
data directories; the machine's shared NATS is never touched). The stream is
first created with one replica and then reconciled to three by ``EventLog.ensure``
(as a deployment given ``--bus-replicas 3`` does). A publisher re-sends whatever
was not acknowledged (as a phone re-sends to a gateway), a worker evaluates, and
the node leading the stream is SIGKILLed in the middle: every acknowledged event
is still in the stream, and the worker, on the two survivors, takes each exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from natskit import NatsCluster, wait_for

from coverwatch.bus import (
    BusMessage,
    BusNames,
    Checkpoints,
    EventLog,
    EventTally,
    Worker,
    WorkerSettings,
    connect,
    open_bucket,
)

SITES = ["quay", "yard"]
T = TypeVar("T")


async def _publish_until_acked(log: EventLog, site: str, key: str, row: Any) -> int:
    """Publish until acknowledged (same message id each time); returns the failures."""
    for failures in range(400):
        try:
            await log.publish(site, [(key, row)], timeout=1.0)
            return failures
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{key} never acknowledged")


async def _until_ok(make: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """``make()`` again until it succeeds: a JetStream call while a leader is elected."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await make()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_r3_stream_survives_a_killed_nats_node(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path / "js").start()
    names = BusNames("coverwatch")  # private servers: the real names

    async def body() -> None:
        await cluster.ready()
        nc = await connect(cluster.url)
        js = nc.jetstream()
        info = await _until_ok(EventLog(js, names).ensure)
        assert (info.config.num_replicas or 1) == 1
        log = EventLog(js, names, replicas=3)
        info = await _until_ok(log.ensure)  # reconciled: the existing stream scaled to R3
        assert info.config.num_replicas == 3
        assert (await js.stream_info(names.stream)).config.num_replicas == 3
        await open_bucket(js, names.checkpoints)  # R1, then reconciled by the worker
        outputs: list[Any] = []

        async def sink(site: str, epoch: int, seq: int, out: Any) -> None:
            outputs.extend(out)

        wnc = await connect(cluster.url)
        worker = Worker(wnc, sites=lambda: SITES, factory=EventTally, names=names, sink=sink,
                        settings=WorkerSettings(lease_s=3.0, renew_s=0.5, checkpoint_s=0.5,
                                                watermark_s=0.5, replicas=3),
                        lease_url=cluster.url)
        await worker.start()
        for bucket in (names.leases, names.checkpoints):
            assert (await js.stream_info(f"KV_{bucket}")).config.num_replicas == 3
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        acked: dict[str, set[str]] = {s: set() for s in SITES}
        failures = 0

        async def send(lo: int, hi: int) -> None:
            nonlocal failures
            for i in range(lo, hi):
                t = time.time_ns() // 1000
                for site in SITES:
                    row = {"kind": "fix", "t_us": t, "officer": "A1", "x": 0.0, "y": 0.0}
                    failures += await _publish_until_acked(log, site, f"{site}-{i}", row)
                    acked[site].add(f"{site}-{i}")

        await send(0, 60)
        assert await wait_for(lambda: all(
            s in worker.runs and worker.runs[s].taken >= 60 for s in SITES), 30)
        leader = (await js.stream_info(names.stream)).cluster
        assert leader is not None and leader.leader is not None
        victim = next(s for s in cluster.servers if s.name == leader.leader)
        sending = asyncio.create_task(send(60, 200))  # the kill lands mid-stream
        await wait_for(lambda: len(acked[SITES[-1]]) >= 90, 30, step=0.01)
        victim.signal(signal.SIGKILL)
        await sending
        assert all(len(acked[s]) == 200 for s in SITES)
        # A new leader among the two survivors; the stream kept its three-way config.
        after = (await _until_ok(lambda: js.stream_info(names.stream))).cluster
        assert after is not None and after.leader != victim.name

        # Nothing acknowledged is lost: a fresh reader finds every key, each once.
        seen: list[BusMessage] = []

        async def collect(m: BusMessage) -> None:
            if m.kind == "event":
                seen.append(m)

        subs = [await _until_ok(lambda s=s: log.follow(s, 0, collect)) for s in SITES]
        assert await wait_for(lambda: len(seen) >= 400, 60)
        for sub in subs:
            await sub.unsubscribe()
        for site in SITES:
            keys = [m.key for m in seen if m.site == site]
            assert sorted(keys) == sorted(acked[site])  # each acknowledged key, exactly once

        # Evaluation resumed on the survivors: every event taken once (tally in checkpoints).
        # A JetStream call may time out while the killed node's groups elect new leaders.
        cps = Checkpoints(await _until_ok(lambda: open_bucket(js, names.checkpoints)))

        async def evaluated() -> bool:
            for s in SITES:
                cp = await _until_ok(lambda s=s: cps.load(s))
                if cp is None or cp.state is None or EventTally(s, cp.state).events < 200:
                    return False
            return True

        assert await wait_for(evaluated, 90)  # generous: a bound, not a timing claim
        for s in SITES:
            cp = await _until_ok(lambda s=s: cps.load(s))
            assert cp is not None and cp.state is not None
            assert EventTally(s, cp.state).events == 200  # none lost, none doubled
        stop.set()
        await asyncio.wait_for(task, 30)
        await wnc.close()
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 240))
    finally:
        cluster.stop()
