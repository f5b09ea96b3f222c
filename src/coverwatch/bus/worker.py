"""The evaluator worker: owns a share of the sites and evaluates each in stream order.

Every ``renew_s`` the worker beats its heartbeat and renews its leases (a
task of its own, so nothing slow delays it) and, in its round, evens the load
(:func:`~coverwatch.bus.leases.balanced_moves`), publishes a watermark for
each site it owns, and runs the dead-man check. For each owned
site a :class:`SiteRun` claims the checkpoint, restores the evaluator, follows
the site's subject from the checkpoint's sequence, hands outputs to the sink
and checkpoints every ``checkpoint_s``. A site given up (rebalancing, shutdown)
is checkpointed, then released, so the next owner starts at once; a site whose
lease is lost stops without writing anything more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from nats.aio.client import Client

from coverwatch.bus.checkpoints import Checkpoints
from coverwatch.bus.evaluator import EvaluatorFactory
from coverwatch.bus.leases import (
    DeadmanCheck,
    LeaseTable,
    LeaseView,
    balanced_moves,
    lease_name,
    lease_ttl,
    open_bucket,
)
from coverwatch.bus.log import BusNames, EventLog
from coverwatch.bus.siterun import LeaseKeeper, OutputSink, SiteRun
from coverwatch.clock import wall_clock_us

__all__ = ["LeaseKeeper", "OutputSink", "SiteRun", "Worker", "WorkerSettings"]

log = logging.getLogger("coverwatch.bus")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Timings of the distributed mode (seconds)."""

    lease_s: float = 6.0  # a dead worker's sites move after this (plus one round)
    renew_s: float = 1.0
    checkpoint_s: float = 1.0
    # A site that took only watermarks since its last checkpoint (a quiet site) is
    # checkpointed this much less often: its next owner re-reads a few more watermarks,
    # and a thousand quiet sites cost a fifth of the snapshots and KV writes.
    idle_checkpoint_factor: float = 5.0
    watermark_s: float = 1.0
    lateness_s: float = 2.0
    # Devices uploading in bursts hold the watermark back up to this (an evaluator with
    # a ``watermark(now_us)``: the single process's device watermark, server/watermark.py).
    max_lateness_s: float = 10.0
    deadman_s: float = 15.0  # a site unowned this long is reported
    batch_max: int = 20_000
    # Free sites claimed in one round (all of a failed worker's, up to a thousand), their
    # lease claims and starts ``take_in_flight`` at a time; ``max_sites`` (None: no limit)
    # is the most leases this worker holds (sites, or partitions if partitioned): beyond
    # it the others, or the dead-man check, see them.
    take_per_round: int = 1000
    take_in_flight: int = 64
    max_sites: int | None = None
    # Of the stream and buckets (3 on a three-node cluster); None: as they are (R1 if new).
    replicas: int | None = None
    handover_s: float = 2.0  # at shutdown, the longest wait for a site's last checkpoint
    # Leases per partition (None: one lease per site): a site belongs to partition
    # ``blake2b(site) mod partitions``, fixed for the deployment (docs/scale.md, "Partitions").
    # A worker renews, watches and takes over partitions, so a thousand sites cost
    # ``partitions`` lease writes a second, and a failover claims that many keys.
    partitions: int | None = None


class Worker:
    """One evaluator worker process's share of the deployment; see the module docstring."""

    def __init__(
        self, nc: Client, *, sites: Callable[[], Collection[str]], factory: EvaluatorFactory,
        names: BusNames | None = None, sink: OutputSink | None = None,
        settings: WorkerSettings | None = None, worker_id: str | None = None,
        on_orphan: Callable[[str, float], Awaitable[None]] | None = None,
        on_owned: Callable[[str], Awaitable[None]] | None = None,
        on_run: Callable[[str, int, int], None] | None = None,
        clock_us: Callable[[], int] = wall_clock_us,
        lease_url: str | None = None,
        before_watermarks: Callable[[list[str]], Awaitable[Mapping[str, int]]] | None = None,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.names = names or BusNames()
        self.settings = settings or WorkerSettings()
        self.id = worker_id or f"w-{uuid.uuid4().hex[:10]}"
        self.sites = sites
        self.factory = factory
        self.sink = sink
        self.on_orphan = on_orphan
        self.on_owned = on_owned
        self.on_run = on_run  # (site, epoch, resumed after seq): for logs and tests
        # Before each round's watermarks (the owned sites): publish what gateways left
        # unpublished and say how far each site's watermark may go (the bus outbox).
        self.before_watermarks = before_watermarks
        # With a URL, leases are renewed by a LeaseKeeper thread (recommended).
        self.lease_url = lease_url
        self.keeper: LeaseKeeper | None = None
        self.clock_us = clock_us
        self.runs: dict[str, SiteRun] = {}
        self._starting: set[asyncio.Task[None]] = set()  # runs starting (see _take_many)
        self._start_limit: asyncio.Semaphore | None = None
        self.released: asyncio.Future[None] | None = None  # the shutdown's lease release
        self.log = EventLog(self.js, self.names, replicas=self.settings.replicas)
        self._last_watermark = 0.0
        self.view: LeaseView
        self.leases: LeaseTable
        self.checkpoints: Checkpoints
        self.deadman: DeadmanCheck | None = None

    async def start(self) -> None:
        """Create what is missing (stream, buckets) and start watching the leases."""
        s = self.settings
        await self.log.ensure()
        kv = await open_bucket(self.js, self.names.leases, replicas=s.replicas,
                               ttl_s=lease_ttl(s.lease_s))
        cps = await open_bucket(self.js, self.names.checkpoints, replicas=s.replicas)
        self.checkpoints = Checkpoints(cps)
        self.view = LeaseView(kv, s.lease_s)
        await self.view.start()
        self.leases = LeaseTable(kv, self.view, self.id, lease_s=s.lease_s)
        if self.lease_url is not None:
            self.keeper = LeaseKeeper(self.lease_url, self.names.leases, self.leases,
                                      s.renew_s, lambda: len(self.runs))
            await asyncio.to_thread(self.keeper.start)
        if self.on_orphan is not None:
            self.deadman = DeadmanCheck(self.view, self.sites, s.deadman_s, self.on_orphan,
                                        self.on_owned, lease_of=self.lease_of)

    async def run(self, stop: asyncio.Event) -> None:
        """Take part until ``stop`` is set, then hand every site over cleanly."""
        # Renewal is its own task: slow work in a round (starting many sites, a
        # busy CPU) must never hold up the leases of the sites already owned.
        renewer = None
        if self.keeper is None:
            renewer = asyncio.create_task(self._renew_forever(stop), name="renew")
        try:
            while not stop.is_set():
                try:
                    await self.round()
                except Exception:  # e.g. NATS restarting: the next round retries
                    log.exception("worker round failed")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.renew_s)
        finally:
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            await self.close()

    async def _renew_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.renew()
            except Exception:
                log.exception("renewal failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.renew_s)

    def lease_of(self, site: str) -> str:
        """The lease that covers ``site``: its own, or its partition's (``p.<k>``)."""
        return lease_name(site, self.settings.partitions)

    def owns(self, site: str) -> bool:
        """Whether this worker may act for ``site`` now (its lease is held and fresh)."""
        return self.leases.owns(self.lease_of(site))

    def epoch(self, site: str) -> int | None:
        """The fencing token of ``site``: its lease's revision when this worker took it."""
        return self.leases.epochs.get(self.lease_of(site))

    async def renew(self) -> None:
        """Heartbeat and renew every held lease; stop the runs of lost ones."""
        await self.leases.heartbeat(len(self.runs))
        held = list(self.leases.revisions)
        renewed = await asyncio.gather(*(self.leases.renew(n) for n in held))
        lost = {n for n, ok in zip(held, renewed, strict=True) if not ok}
        for site, run in list(self.runs.items()):
            if self.lease_of(site) in lost and self.runs.get(site) is run:
                log.warning("site %s: lease lost", site)
                del self.runs[site]
                await run.stop(checkpoint=False)

    async def round(self) -> None:
        """Drop failed and lost runs, rebalance, publish watermarks, run the dead-man check."""
        partitioned = self.settings.partitions is not None
        for site, run in list(self.runs.items()):
            if self.lease_of(site) not in self.leases.revisions and self.runs.get(site) is run:
                log.warning("site %s: lease lost", site)  # seen by the lease keeper
                del self.runs[site]
                await run.stop(checkpoint=False)
        for site, run in list(self.runs.items()):
            if run.done and self.runs.get(site) is run:  # failed: start again from the checkpoint
                del self.runs[site]
                await run.stop(checkpoint=False)
                if not partitioned:  # a partition's other sites keep it; restarted below
                    await self.leases.release(site)
        sites = set(self.sites())
        by_lease: dict[str, list[str]] = {}
        for site in sorted(sites):
            by_lease.setdefault(self.lease_of(site), []).append(site)
        take, give = balanced_moves(self.id, set(by_lease), self.view,
                                    list(self.leases.revisions))
        for name in give:
            await asyncio.gather(*(self._give_up(s, release=False)
                                   for s in by_lease.get(name, [])))
            await self.leases.release(name)
        room = self.settings.take_per_round
        if self.settings.max_sites is not None:
            room = min(room, self.settings.max_sites - len(self.leases.revisions))
        # Sites of held leases with no run: new in a held partition, or failed above.
        missing = [s for n in self.leases.revisions for s in by_lease.get(n, [])
                   if s not in self.runs]
        await self._take_many(take[: max(room, 0)], by_lease, missing)
        # Not while runs are starting (a takeover of many sites): watermarks would make every
        # started run evaluate each second while the others wait for the CPU to start.
        if not self._starting and \
                time.monotonic() - self._last_watermark >= self.settings.watermark_s:
            self._last_watermark = time.monotonic()
            await self._watermarks()
        if self.deadman is not None:
            await self.deadman.check()

    async def _watermarks(self) -> None:
        s = self.settings
        sites = list(self.runs)
        caps: Mapping[str, int] = {}
        if self.before_watermarks is not None and sites:
            try:
                caps = await self.before_watermarks(sites)
            except Exception as e:  # e.g. PostgreSQL failing over
                # Unknown whether a gateway left events unpublished: no watermark now.
                log.warning("no watermarks this round: the outbox is unreadable: %s", e)
                return
        now = self.clock_us()
        lateness, widest = round(s.lateness_s * 1e6), round(s.max_lateness_s * 1e6)
        marks = {}
        for site in sites:
            run = self.runs.get(site)
            # Not for a run still starting: during a takeover of many sites the starts
            # come first; a run gets its watermark in the first round after it started.
            if run is not None and run.started:
                horizon = run.horizon(now, lateness, widest)
                marks[site] = min(horizon, caps.get(site, horizon))
        await asyncio.gather(*(self.log.publish_watermark(site, h) for site, h in marks.items()))

    async def _take_many(self, names: list[str], by_lease: Mapping[str, list[str]],
                         missing: Sequence[str] = ()) -> None:
        """Claim many free sites' leases together (``take_in_flight`` at a time), then start
        their runs in the background, as many at a time: the round goes on, so sites whose
        leases go stale a moment later are claimed in the next round, not after every start
        of this one (a failover of a thousand sites is not two rounds' starts end to end)."""
        if not names and not missing:
            return
        if self._start_limit is None:
            self._start_limit = asyncio.Semaphore(self.settings.take_in_flight)
        limit = asyncio.Semaphore(self.settings.take_in_flight)
        start_limit = self._start_limit

        def new_run(site: str, epoch: int) -> SiteRun:
            s = self.settings
            run = SiteRun(site, epoch, self.log, self.checkpoints, self.factory, self.sink,
                          self.owns, s.checkpoint_s, s.batch_max,
                          s.checkpoint_s * s.idle_checkpoint_factor)
            self.runs[site] = run  # renewed from now on, even while it starts
            return run

        async def claim(name: str) -> list[SiteRun]:
            async with limit:
                epoch = await self.leases.try_acquire(name)
            if epoch is None:
                return []
            return [new_run(site, epoch) for site in by_lease.get(name, [])]

        async def start(run: SiteRun) -> None:
            async with start_limit:
                if self.runs.get(run.site) is run:  # not lost or given up meanwhile
                    await self._start(run)

        runs = [new_run(s, e) for s in missing if (e := self.epoch(s)) is not None]
        for claimed in await asyncio.gather(*(claim(n) for n in names)):
            runs += claimed
        for run in runs:
            task = asyncio.create_task(start(run), name=f"start {run.site}")
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start(self, run: SiteRun) -> None:
        site = run.site
        try:
            await run.start(self.id)
        except Exception as e:
            log.warning("site %s: could not start: %s", site, e)
            if self.runs.get(site) is run:
                del self.runs[site]
            await run.stop(checkpoint=False)
            if self.settings.partitions is None:
                await self.leases.release(site)
            return
        log.info("site %s: owned (epoch %d, from seq %d)", site, run.epoch, run.seq)
        if self.on_run is not None:
            self.on_run(site, run.epoch, run.seq)

    async def _give_up(self, site: str, wait_s: float = 10.0, *, release: bool = True) -> None:
        run = self.runs.pop(site, None)
        if run is not None:
            await run.stop(checkpoint=True, wait_s=wait_s)
        if release:
            await self.leases.release(self.lease_of(site))

    async def close(self) -> None:
        """Checkpoint and release every site, then leave (a clean shutdown), in bounded time
        whatever the number of sites: the runs stop together, their last checkpoints are
        waited for ``handover_s`` in all (the next owner resumes from the one before
        otherwise), and the leases are released together."""
        began = time.monotonic()
        if self.keeper is not None:
            self.keeper.halt()  # no renewal from now on; the thread ends by itself
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        runs, self.runs = self.runs, {}
        stopping = asyncio.gather(*(r.stop(checkpoint=True, wait_s=self.settings.handover_s)
                                    for r in runs.values()), return_exceptions=True)
        try:
            await asyncio.wait_for(stopping, self.settings.handover_s)
        except TimeoutError:
            log.warning("shutdown: %d sites' last checkpoints not all written in %.0f s",
                        len(runs), self.settings.handover_s)
            for run in runs.values():
                run.abandon()
        handed = time.monotonic()
        # Shielded: a caller that stops waiting (server/cluster.py) still lets it finish.
        self.released = asyncio.ensure_future(self.release_all())
        await asyncio.shield(self.released)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leases.leave(), 2.0)
        await self.view.stop()
        log.info("shutdown: %d sites handed over in %.1f s, leases released in %.1f s",
                 len(runs), handed - began, time.monotonic() - handed)

    async def release_all(self, timeout_s: float = 3.0) -> None:
        """Release every lease still held, together (a thousand deletes in flight at once,
        not one after another), waiting ``timeout_s`` at most: a lease left behind
        expires on its own."""
        held = list(self.leases.revisions)
        if not held:
            return
        try:
            await asyncio.wait_for(asyncio.gather(
                *(self.leases.release(n) for n in held), return_exceptions=True), timeout_s)
        except TimeoutError:
            log.warning("shutdown: %d leases not all released in %.0f s; the rest expire",
                        len(held), timeout_s)
