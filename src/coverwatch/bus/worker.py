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
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

from coverwatch.bus.checkpoints import Checkpoint, CheckpointConflict, Checkpoints
from coverwatch.bus.evaluator import EvaluatorFactory, SiteEvaluator
from coverwatch.bus.leases import (
    DeadmanCheck,
    LeaseTable,
    LeaseView,
    balanced_moves,
    lease_name,
    lease_ttl,
    open_bucket,
)
from coverwatch.bus.log import BusMessage, BusNames, EventLog, connect
from coverwatch.clock import wall_clock_us

__all__ = ["LeaseKeeper", "OutputSink", "SiteRun", "Worker", "WorkerSettings"]

log = logging.getLogger("coverwatch.bus")

# (site, epoch, stream sequence consumed, outputs); must be idempotent (see evaluator.py).
OutputSink = Callable[[str, int, int, Sequence[Any]], Awaitable[None]]




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


@dataclass
class SiteRun:
    """One owned site: checkpoint, evaluator, subscription, consumer task."""

    site: str
    epoch: int
    log: EventLog
    checkpoints: Checkpoints
    factory: EvaluatorFactory
    sink: OutputSink | None
    owns: Callable[[str], bool]
    checkpoint_s: float
    batch_max: int
    idle_checkpoint_s: float = 0.0  # see WorkerSettings.idle_checkpoint_factor
    seq: int = 0
    taken: int = 0  # events taken by this run
    cp: Checkpoint | None = None
    evaluator: SiteEvaluator | None = None
    failed: BaseException | None = None
    queue: asyncio.Queue[BusMessage | None] = field(
        default_factory=lambda: asyncio.Queue(20_000))
    _sub: Any = None
    _task: asyncio.Task[None] | None = None
    _last_cp: float = 0.0
    _dirty: bool = False  # events, control or outputs since the last checkpoint
    _caught_up: bool = False  # through the backlog found at the start (checkpointed then)
    _stopped: bool = False
    _busy: bool = False

    def horizon(self, now_us: int, lateness_us: int, max_lateness_us: int) -> int:
        """The watermark to publish now: the evaluator's (its devices' newest times) if it
        has one, else the wall clock less the lateness. Behind the stream, what it knows
        of the devices is old: the widest lateness then, so nothing the stream still holds
        back becomes late."""
        mark = getattr(self.evaluator, "watermark", None)
        if mark is None:
            return now_us - lateness_us
        if self._busy or not self.queue.empty():
            return now_us - max(lateness_us, max_lateness_us)
        return int(mark(now_us))

    async def start(self, owner: str) -> None:
        self.cp = await self.checkpoints.claim(self.site, owner, self.epoch)
        state = self.cp.state
        self.seq = self.cp.seq
        self.evaluator = await asyncio.to_thread(self.factory, self.site, state)
        self._last_cp = time.monotonic()
        self._caught_up = False
        self._sub = await self.log.follow(self.site, self.seq, self._deliver)
        if self._stopped:  # the lease was lost while starting
            await self._sub.unsubscribe()
            return
        self._task = asyncio.create_task(self._consume(), name=f"site {self.site}")

    async def _deliver(self, message: BusMessage) -> None:
        if self._stopped:
            # No consumer outlives the run: one the client re-created after a NATS
            # restart, for a run that has ended (its site given up or lost), ends here.
            sub, self._sub = self._sub, None
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            return
        await self.queue.put(message)

    @property
    def started(self) -> bool:
        """Whether the run follows its subject (claimed, restored, consuming)."""
        return self._task is not None

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def stop(self, *, checkpoint: bool, wait_s: float = 10.0) -> None:
        """Stop following; with ``checkpoint``, save where it got to first (waiting at most
        ``wait_s``: the next owner resumes from the previous checkpoint otherwise)."""
        self._stopped = True
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
                self._sub = None
            except Exception:  # NATS away: _deliver ends it when it delivers again
                log.warning("site %s: unsubscribing failed; ended at its next delivery",
                            self.site)
        if self._task is None:
            return
        if checkpoint and not self._task.done():
            # Behind the queued messages: they are evaluated, then checkpointed.
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._task), wait_s)
            except Exception:
                self._task.cancel()
        else:
            self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task

    async def _consume(self) -> None:
        try:
            while True:
                try:
                    first = await asyncio.wait_for(self.queue.get(), self.checkpoint_s)
                except TimeoutError:  # idle: checkpoint what the last batch left
                    await self.checkpoint()
                    continue
                batch = [first]
                while len(batch) < self.batch_max and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                end = batch[-1] is None
                messages = [m for m in batch if m is not None and m.seq > self.seq]
                if messages:
                    self._busy = True
                    try:
                        outputs = await asyncio.to_thread(self._apply, messages)
                    finally:
                        self._busy = False
                    if not self.owns(self.site):
                        return  # the lease may already look stale elsewhere: act no more
                    if outputs and self.sink is not None:
                        await self.sink(self.site, self.epoch, self.seq, outputs)
                    self._dirty = self._dirty or bool(outputs) or any(
                        m.kind != "watermark" for m in messages)
                # The end of the backlog a start found is checkpointed at once (a takeover
                # shows as soon as the site is evaluated again); before it, every
                # checkpoint_s if events came; after it, as below.
                caught_up = not self._caught_up and self.queue.empty()
                self._caught_up = self._caught_up or caught_up
                since = time.monotonic() - self._last_cp
                if end or caught_up or since >= (
                        self.checkpoint_s if self._dirty
                        else max(self.checkpoint_s, self.idle_checkpoint_s)):
                    await self.checkpoint()
                if end:
                    return
        except CheckpointConflict as e:
            log.warning("site %s: %s", self.site, e)
            self.failed = e
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("site %s: evaluation failed", self.site)
            self.failed = e

    def _apply(self, messages: list[BusMessage]) -> list[Any]:
        assert self.evaluator is not None
        outputs: list[Any] = []
        events: list[BusMessage] = []
        # An evaluator whose advance(a); advance(b) equals advance(max(a, b)) (the cover
        # engine's) gets one advance per run of watermarks: a new owner re-reading a quiet
        # site's watermarks since its checkpoint advances once, not once a second.
        coalesce = bool(getattr(self.evaluator, "coalesce_watermarks", False))
        held: int | None = None  # the largest horizon of the run of watermarks so far
        for i, m in enumerate(messages):
            if m.kind == "event":
                events.append(m)
                continue
            if events:
                outputs += self.evaluator.take(events)
                self.taken += len(events)
                events = []
            if m.kind == "watermark":
                horizon = m.horizon_us if held is None else max(held, m.horizon_us)
                if coalesce and i + 1 < len(messages) and messages[i + 1].kind == "watermark":
                    held = horizon
                    continue
                held = None
                outputs += self.evaluator.advance(horizon)
            else:
                outputs += self.evaluator.control(m.data)
        if events:
            outputs += self.evaluator.take(events)
            self.taken += len(events)
        self.seq = messages[-1].seq
        return outputs

    async def checkpoint(self) -> None:
        assert self.cp is not None and self.evaluator is not None
        if self.seq == self.cp.seq:
            return
        if not self.owns(self.site):
            raise CheckpointConflict(f"{self.site}: lease lapsed before the checkpoint")
        state = await asyncio.to_thread(self.evaluator.snapshot)
        self.cp = await self.checkpoints.save(self.cp, self.seq, state)
        self._last_cp = time.monotonic()
        self._dirty = False


class LeaseKeeper:
    """Renews a worker's leases from a thread of its own, on a connection of its own.

    Evaluation is CPU work in the same process; on a busy machine it can delay
    the event loop by seconds, and a lease not renewed in time moves to another
    worker for nothing. Here renewals wait only for the interpreter lock.
    """

    def __init__(self, url: str, bucket: str, leases: LeaseTable, renew_s: float,
                 load: Callable[[], int]) -> None:
        self.url = url
        self.bucket = bucket
        self.leases = leases
        self.renew_s = renew_s
        self.load = load
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="lease-keeper", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(15.0):
            raise RuntimeError(f"lease keeper could not connect: {self.error}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # reported by start(), or logged
            self.error = e
            log.exception("lease keeper stopped")

    async def _run(self) -> None:
        nc = await connect(self.url, name="coverwatch-lease-keeper")
        kv = await nc.jetstream().key_value(self.bucket)
        self._ready.set()
        try:
            while not self._stop.is_set():
                await self.leases.heartbeat(self.load(), kv)
                sites = list(self.leases.revisions)
                await asyncio.gather(*(self.leases.renew(s, kv) for s in sites))
                await asyncio.to_thread(self._stop.wait, self.renew_s)
        finally:
            await nc.close()


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
        """Checkpoint and release every site, then leave (a clean shutdown)."""
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        if self.keeper is not None:
            await asyncio.to_thread(self.keeper.stop)
        # Every site at once, each checkpoint waited for briefly: a node told to stop
        # (SIGTERM) is gone within seconds, its leases released for the next owner.
        await asyncio.gather(*(self._give_up(s, wait_s=self.settings.handover_s,
                                             release=False)
                               for s in list(self.runs)), return_exceptions=True)
        await asyncio.gather(*(self.leases.release(n) for n in list(self.leases.revisions)),
                             return_exceptions=True)
        await self.leases.leave()
        await self.view.stop()
