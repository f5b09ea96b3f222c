"""One owned site's run, and the thread that keeps a worker's leases.

A :class:`SiteRun` claims the site's checkpoint, restores the evaluator, follows the
site's subject from the checkpoint's sequence, hands outputs to the sink and checkpoints
(see ``bus/worker.py`` for the cadence). A :class:`LeaseKeeper` renews the leases a worker
holds from a thread and a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coverwatch.bus.checkpoints import Checkpoint, CheckpointConflict, Checkpoints
from coverwatch.bus.evaluator import EvaluatorFactory, SiteEvaluator
from coverwatch.bus.leases import LeaseTable
from coverwatch.bus.log import BusMessage, EventChunk, EventLog, connect

__all__ = ["LeaseKeeper", "OutputSink", "SiteRun"]

log = logging.getLogger("coverwatch.bus")

# (site, epoch, stream sequence consumed, outputs); must be idempotent (see evaluator.py).
OutputSink = Callable[[str, int, int, Sequence[Any]], Awaitable[None]]


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
    # One entry per stream message (a message of several events is applied whole).
    queue: asyncio.Queue[BusMessage | EventChunk | None] = field(
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
        self._sub = await self.log.follow_messages(self.site, self.seq, self._deliver)
        if self._stopped:  # the lease was lost while starting
            await self._sub.unsubscribe()
            return
        self._task = asyncio.create_task(self._consume(), name=f"site {self.site}")

    async def _deliver(self, message: BusMessage | EventChunk) -> None:
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

    def _at_end(self) -> bool:
        seen = self.log.delivered.get(self.site)
        return seen is None or seen.pending <= 0

    def abandon(self) -> None:
        """End the run now, whatever it was doing (a shutdown out of time)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()

    async def _consume(self) -> None:
        try:
            while True:
                try:
                    first = await asyncio.wait_for(self.queue.get(), self.checkpoint_s)
                except TimeoutError:  # idle: checkpoint what the last batch left
                    await self.checkpoint()
                    continue
                batch = [first]
                size = _size(first)
                while size < self.batch_max and not self.queue.empty():
                    more = self.queue.get_nowait()
                    batch.append(more)
                    size += _size(more)
                end = batch[-1] is None
                # Whole messages only: the events of a chunk share its sequence (the cursor).
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
                # Through the backlog: nothing queued, and the last message delivered was
                # the stream's end when it was sent (a queue emptied halfway through the
                # backlog's delivery is not the end: that checkpoint then came 5 s later).
                caught_up = not self._caught_up and self.queue.empty() and self._at_end()
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

    def _apply(self, messages: list[BusMessage | EventChunk]) -> list[Any]:
        assert self.evaluator is not None
        outputs: list[Any] = []
        events: list[BusMessage | EventChunk] = []
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
                outputs += self._take(events)
                events = []
            assert isinstance(m, BusMessage)
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
            outputs += self._take(events)
        self.seq = messages[-1].seq
        return outputs

    def _take(self, events: list[BusMessage | EventChunk]) -> Sequence[Any]:
        """One run of events (single ones and chunks, in stream order) to the evaluator:
        as columns to one with ``take_columns`` (no item per event), else as items."""
        assert self.evaluator is not None
        take_columns = getattr(self.evaluator, "take_columns", None)
        if take_columns is None:
            items = [x for m in events
                     for x in (m.items() if isinstance(m, EventChunk) else (m,))]
            self.taken += len(items)
            return self.evaluator.take(items)
        seqs: list[int] = []
        keys: list[str | None] = []
        rows: list[Mapping[str, Any]] = []
        for m in events:
            if isinstance(m, EventChunk):
                seqs += itertools.repeat(m.seq, len(m))
                keys += m.keys
                rows += m.rows
            else:
                seqs.append(m.seq)
                keys.append(m.key)
                rows.append(m.data)
        self.taken += len(rows)
        out: Sequence[Any] = take_columns(seqs, keys, rows)
        return out

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


def _size(m: BusMessage | EventChunk | None) -> int:
    """Events (or items) a queued message holds."""
    return 0 if m is None else len(m) if isinstance(m, EventChunk) else 1


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

    def halt(self) -> None:
        """Renew nothing more; the thread ends within ``renew_s`` (a shutdown does not wait)."""
        self._stop.set()

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
