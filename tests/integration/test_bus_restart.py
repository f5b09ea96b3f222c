"""NATS restart: a private nats-server is killed and restarted under a running worker.

The server is the test's own (free port, own data directory): the machine's
shared NATS is never restarted. A publisher re-sends what failed during the
outage with the same message ids (as a client retries a gateway), and the
worker, reconnected, ends with every event taken exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from natskit import PrivateNats, wait_for

from coverwatch.bus import (
    BusNames,
    Checkpoints,
    EventLog,
    EventTally,
    LeaseView,
    Worker,
    WorkerSettings,
    connect,
    open_bucket,
)

SITES = ["quay", "yard"]


async def _publish_with_retry(log: EventLog, site: str, batch: list[tuple[str, Any]]) -> int:
    """Publish until acknowledged; returns how many attempts it took."""
    for attempt in range(1, 200):
        try:
            await log.publish(site, batch, timeout=1.0)
            return attempt
        except Exception:
            await asyncio.sleep(0.2)
    raise AssertionError("never acknowledged")


def test_worker_recovers_after_a_nats_restart(tmp_path: Path) -> None:
    server = PrivateNats(tmp_path / "js")
    server.start()
    names = BusNames("coverwatch")  # a private server: the real names

    async def body() -> None:
        nc = await connect(server.url)
        log = EventLog(nc.jetstream(), names)
        await log.ensure()
        outputs: list[Any] = []

        async def sink(site: str, epoch: int, seq: int, out: Any) -> None:
            outputs.extend(out)

        wnc = await connect(server.url)
        worker = Worker(wnc, sites=lambda: SITES, factory=EventTally, names=names, sink=sink,
                        settings=WorkerSettings(lease_s=3.0, renew_s=0.5, checkpoint_s=0.5,
                                                watermark_s=0.5))
        await worker.start()
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        retried = 0

        async def send(lo: int, hi: int) -> None:
            nonlocal retried
            for i in range(lo, hi):
                t = time.time_ns() // 1000
                for site in SITES:
                    row = {"kind": "fix", "t_us": t, "officer": "A1", "x": 0.0, "y": 0.0}
                    retried += await _publish_with_retry(log, site, [(f"{site}-{i}", row)]) - 1

        await send(0, 50)
        assert await wait_for(lambda: all(
            s in worker.runs and worker.runs[s].taken >= 50 for s in SITES), 20)
        # Another node's view of the leases (a watcher only, as the dead-man check uses).
        view = LeaseView(await open_bucket(nc.jetstream(), names.leases), 3.0)
        await view.start()
        before = {s: view.sites[s].revision for s in SITES}
        server.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        server.proc.wait()  # type: ignore[union-attr]
        sending = asyncio.create_task(send(50, 100))  # runs into the outage
        await asyncio.sleep(2.0)
        server.proc = None
        server.start()
        await sending
        await send(100, 120)
        assert retried > 0  # some publishes did fail during the outage and were re-sent

        cps = Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints))

        async def done() -> bool:
            for s in SITES:
                cp = await cps.load(s)
                if cp is None or cp.state is None or EventTally(s, cp.state).events < 120:
                    return False
            return True

        assert await wait_for(done, 40)
        for s in SITES:
            cp = await cps.load(s)
            assert cp is not None and cp.state is not None
            tally = EventTally(s, cp.state)
            assert tally.events == 120  # every event once: none lost, no retry doubled
        # The watcher came back too: it sees renewals made after the restart, so the
        # dead-man check raises no false alarm once NATS is back.
        assert await wait_for(lambda: all(
            view.sites[s].revision > before[s] + 5 and view.owner(s) == worker.id
            for s in SITES), 20)
        await view.stop()
        stop.set()
        await task
        await wnc.close()
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 120))
    finally:
        server.stop()
