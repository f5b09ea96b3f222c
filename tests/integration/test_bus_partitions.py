"""Leases per partition (issue 26): a worker holds ``p.<k>`` keys, not one key per site.

Twenty-four sites in four partitions (a stable hash of the site id). The first worker owns
all of them through at most four lease keys; every site is evaluated, its checkpoint
fenced with its partition's epoch. It stops cleanly (leases released); a second worker then
takes every partition at once, with epochs above the first's, and evaluates every site
again: every event taken exactly once. Then a site's run under the first worker's epoch
can no longer checkpoint (fencing holds across partitions). No timing is asserted.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from natskit import NATS_URL, cleanup, need_nats, unique_names, wait_for

from coverwatch.bus import Checkpoints, EventLog, EventTally, Worker, WorkerSettings, connect
from coverwatch.bus.checkpoints import CheckpointConflict
from coverwatch.bus.leases import lease_name, open_bucket

SITES = [f"yard-{i:02d}" for i in range(24)]
PARTS = 4
PER_SITE = 3


def test_lease_names_are_stable_and_never_a_site() -> None:
    assert lease_name("yard-01", None) == "yard-01"
    names = {lease_name(s, PARTS) for s in SITES}
    assert names <= {f"p.{k}" for k in range(PARTS)} and len(names) > 1
    assert [lease_name(s, PARTS) for s in SITES] == [lease_name(s, PARTS) for s in SITES]
    assert lease_name("yard-01", 7) == "p.2"  # the hash is fixed: a deployment relies on it


def test_partitioned_workers_take_over_every_site_through_partition_leases() -> None:
    need_nats()
    names = unique_names()

    def settings() -> WorkerSettings:
        return WorkerSettings(lease_s=4.0, renew_s=0.5, checkpoint_s=0.5, watermark_s=0.5,
                              deadman_s=60.0, partitions=PARTS)

    async def body() -> None:
        nc = await connect(NATS_URL)
        js = nc.jetstream()
        log = EventLog(js, names)
        await log.ensure()

        async def publish(batch: int) -> dict[str, int]:
            now = time.time_ns() // 1000
            await asyncio.gather(*(log.publish(site, [
                (f"{site}-{batch}-{i}", {"kind": "fix", "t_us": now + i, "officer": "o1",
                                         "x": 0.0, "y": 0.0}) for i in range(PER_SITE)])
                for site in SITES))
            return {s: await log.last_seq(s) for s in SITES}

        cps = Checkpoints(await open_bucket(js, names.checkpoints))

        async def evaluated_by(worker: str, upto: dict[str, int]) -> bool:
            for site in SITES:
                cp = await cps.load(site)
                if cp is None or cp.owner != worker or cp.seq < upto[site]:
                    return False
            return True

        first = Worker(nc, sites=lambda: SITES, factory=EventTally, names=names,
                       settings=settings(), worker_id="first")
        await first.start()
        stop = asyncio.Event()
        running = asyncio.create_task(first.run(stop))
        tails = await publish(0)
        assert await wait_for(lambda: evaluated_by("first", tails), 60)
        held = dict(first.leases.epochs)
        assert set(held) == {lease_name(s, PARTS) for s in SITES}  # partitions, not sites
        assert sorted(first.runs) == SITES
        for site in SITES:
            cp = await cps.load(site)
            assert cp is not None and cp.epoch == held[lease_name(site, PARTS)]
        leases = await open_bucket(js, names.leases)
        keys = [k for k in await leases.keys() if k.startswith("site.")]
        assert sorted(keys) == sorted(f"site.{n}" for n in held)
        old_run = first.runs[SITES[0]]
        stop.set()
        await running  # a clean stop: every site checkpointed, every partition released

        tails = await publish(1)
        second = Worker(nc, sites=lambda: SITES, factory=EventTally, names=names,
                        settings=settings(), worker_id="second")
        await second.start()
        stop2 = asyncio.Event()
        running2 = asyncio.create_task(second.run(stop2))
        try:
            assert await wait_for(lambda: evaluated_by("second", tails), 60)
            for name, epoch in second.leases.epochs.items():
                assert epoch > held[name]  # epochs only grow
            for site in SITES:
                cp = await cps.load(site)
                assert cp is not None
                assert EventTally(site, cp.state).events == 2 * PER_SITE  # none lost or doubled
            # The first worker's run, at its old epoch, can write no checkpoint any more.
            assert old_run.cp is not None
            with pytest.raises(CheckpointConflict):
                await cps.save(old_run.cp, old_run.cp.seq + 1, None)
        finally:
            stop2.set()
            await running2
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 300))
    finally:
        asyncio.run(cleanup(NATS_URL, names))
