"""No consumer outlives its site's ownership (issue 26, operations).

A private nats-server (the test's own). Worker A owns four sites; worker B joins and A
hands two over (rebalancing); then NATS is SIGKILLed and restarted under both (the client
re-creates ordered consumers after a restart: one for a run that has ended must end too).
After each step, the stream's consumers that still have a subscriber bound are exactly one
per site, each on its owner's connection: none for a site a worker gave up, none doubled.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from natskit import PrivateNats, wait_for

from coverwatch.bus import BusNames, EventLog, EventTally, Worker, WorkerSettings, connect

SITES = ["north", "south", "east", "west"]


def test_every_live_consumer_belongs_to_its_sites_owner(tmp_path: Path) -> None:
    server = PrivateNats(tmp_path / "js")
    server.start()
    names = BusNames("coverwatch")

    def settings() -> WorkerSettings:
        return WorkerSettings(lease_s=3.0, renew_s=0.5, checkpoint_s=0.5, watermark_s=0.5,
                              deadman_s=60.0)

    async def body() -> None:
        nc = await connect(server.url)
        js = nc.jetstream()
        log = EventLog(js, names)
        await log.ensure()
        now = time.time_ns() // 1000
        for site in SITES:
            await log.publish(site, [(f"{site}-0", {"kind": "fix", "t_us": now,
                                                    "officer": "o1", "x": 0.0, "y": 0.0})])
        workers: list[Worker] = []
        stops: list[asyncio.Event] = []
        tasks: list[asyncio.Task[None]] = []

        async def add(wid: str) -> Worker:
            wnc = await connect(server.url)
            w = Worker(wnc, sites=lambda: SITES, factory=EventTally, names=names,
                       settings=settings(), worker_id=wid)
            await w.start()
            stop = asyncio.Event()
            workers.append(w)
            stops.append(stop)
            tasks.append(asyncio.create_task(w.run(stop)))
            return w

        async def bound() -> dict[str, int]:
            """Consumers with a subscriber bound, by site."""
            out: dict[str, int] = {}
            for info in await js.consumers_info(names.stream):
                if info.push_bound and info.config.filter_subject:
                    site = names.site_of(info.config.filter_subject)
                    out[site] = out.get(site, 0) + 1
            return out

        async def one_each(expect_split: bool) -> bool:
            runs = [set(w.runs) for w in workers]
            if sorted(s for r in runs for s in r) != sorted(SITES):
                return False  # every site run by exactly one worker
            if expect_split and not all(len(r) == len(SITES) // len(workers) for r in runs):
                return False
            return await bound() == dict.fromkeys(SITES, 1)

        a = await add("a")
        assert await wait_for(lambda: one_each(False), 30)
        assert sorted(a.runs) == sorted(SITES)
        await add("b")
        assert await wait_for(lambda: one_each(True), 60)  # A gave two sites up
        server.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        server.proc.wait()  # type: ignore[union-attr]
        await asyncio.sleep(1.5)
        server.proc = None
        server.start()
        await asyncio.sleep(3.0)  # the clients reconnect and re-create their consumers
        assert await wait_for(lambda: one_each(False), 60)
        # And it stays so: no consumer of an ended run comes back later.
        await asyncio.sleep(3.0)
        assert await one_each(False)
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
        for w in workers:
            await w.nc.close()
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 240))
    finally:
        server.stop()
