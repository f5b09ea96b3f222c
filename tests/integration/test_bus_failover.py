"""Failover of many sites: a dead worker's sixty sites are all taken in one round.

A worker process (tests/integration/busworker.py, the reference evaluator) owns sixty
sites and is SIGKILLed; more events arrive for every site. Once its leases are stale a
survivor takes **every** site in a single round (lease claims in bulk, not a few sites a
round: a thousand sites used to need sixty rounds), then evaluates each again: its
checkpoint past the stream's tail, every event taken exactly once. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from natskit import NATS_URL, cleanup, need_nats, spawn_worker, unique_names, wait_for

from coverwatch.bus import Checkpoints, EventLog, EventTally, Worker, WorkerSettings, connect
from coverwatch.bus.leases import open_bucket

SITES = [f"depot-{i:02d}" for i in range(60)]
PER_SITE = 4


def test_a_dead_workers_sixty_sites_are_taken_in_one_round(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    procs: list[subprocess.Popen[str]] = []

    async def body() -> None:
        nc = await connect(NATS_URL)
        js = nc.jetstream()
        log = EventLog(js, names)
        await log.ensure()

        async def publish(batch: int) -> dict[str, int]:
            now = time.time_ns() // 1000
            acks = await asyncio.gather(*(log.publish(site, [
                (f"{site}-{batch}-{i}", {"kind": "fix", "t_us": now + i, "officer": "o1",
                                         "x": 0.0, "y": 0.0}) for i in range(PER_SITE)])
                for site in SITES))
            return {s: max(p.seq for p in a) for s, a in zip(SITES, acks, strict=True)}

        last = await publish(0)
        procs.append(spawn_worker(names, "victim", SITES, tmp_path / "victim.jsonl"))
        cps = Checkpoints(await open_bucket(js, names.checkpoints))

        async def evaluated_by(worker: str, upto: dict[str, int]) -> bool:
            for site in SITES:
                cp = await cps.load(site)
                if cp is None or cp.owner != worker or cp.seq < upto[site]:
                    return False
            return True

        assert await wait_for(lambda: evaluated_by("victim", last), 120)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        await publish(1)
        tails = {s: await log.last_seq(s) for s in SITES}

        survivor = Worker(nc, sites=lambda: SITES, factory=EventTally, names=names,
                          settings=WorkerSettings(lease_s=4.0, renew_s=0.5, checkpoint_s=0.5,
                                                  watermark_s=0.5, deadman_s=60.0),
                          worker_id="survivor")
        await survivor.start()
        view = survivor.view
        assert await wait_for(lambda: "victim" not in view.live_workers() and all(
            view.owner(s) is None for s in SITES), 30)
        await survivor.round()
        assert sorted(survivor.runs) == SITES  # every orphan in one round
        stop = asyncio.Event()
        running = asyncio.create_task(survivor.run(stop))
        try:
            assert await wait_for(lambda: evaluated_by("survivor", tails), 120)
            for site in SITES:
                cp = await cps.load(site)
                assert cp is not None
                assert EventTally(site, cp.state).events == 2 * PER_SITE  # none lost or doubled
        finally:
            stop.set()
            await running
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 400))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(20)
        asyncio.run(cleanup(NATS_URL, names))
