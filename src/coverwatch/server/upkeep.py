"""One task per process steps every site's time-bound work (issue 26).

Each site had its own ticker, briefing, tours and watchdog tasks, each sleeping between
steps: a thousand sites were thousands of tasks, each waking up to 40 times a second, and
a node's SIGTERM waited behind them. Here every such job is an entry in one heap ordered
by its next due instant (monotonic); :meth:`Upkeep.run` sleeps until the earliest, then
starts every job due. A job keeps its old cadence exactly: it never overlaps itself, and
it is due again ``every`` seconds after its step ended (what ``await step(); await
sleep(every)`` did). A job not yet due costs nothing but its place in the heap.

A step runs eagerly, inside the upkeep's own turn, until it first waits (a lock held by
an ingest, a store thread): only then does it get a task of its own to finish in, so the
steps that complete at once (nearly all ticks of a quiet site) create no task, and a slow
site never holds up the others. Cancelling :meth:`Upkeep.run` cancels those unfinished
steps too: a shutdown has one task to stop, not thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

__all__ = ["Upkeep"]

log = logging.getLogger("coverwatch.server")

Step = Callable[[], Coroutine[Any, Any, Any]]

# Due instants are rounded up to this (s): a thousand sites' ticks, each at its own phase,
# wake the upkeep a few hundred times a second at most, not once each. A step comes at
# most this much later than its interval said (alerts: a tick of 25 ms becomes <= 30 ms).
GRAIN_S = 0.005


@dataclass(eq=False, slots=True)
class _Job:
    name: str
    step: Step
    every: Callable[[], float]
    failed: str  # what the log says when a step raises
    logger: logging.Logger
    quiet: Callable[[], bool] | None  # True: nothing to do now, the step is skipped
    stopped: bool = False


class Upkeep:
    """Every site's periodic steps, in one task; see the module docstring."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Job]] = []
        self._order = itertools.count()
        self._finishing: set[asyncio.Task[None]] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._waiter_due = float("inf")
        self.steps = 0  # started
        self.skipped = 0  # found quiet: nothing due, no step

    def __len__(self) -> int:
        return len(self._heap)

    def every(self, name: str, every: float | Callable[[], float], step: Step, *,
              first_s: float = 0.0, failed: str = "step failed",
              logger: logging.Logger = log, quiet: Callable[[], bool] | None = None) -> None:
        """Run ``step`` now (or after ``first_s``), then ``every`` seconds after each
        step ends; a step that raises is logged with ``failed`` and the job goes on.
        ``quiet``, asked when the step is due, says the step would do nothing now: it is
        skipped (no coroutine, no lock) and due again ``every`` seconds later."""
        interval = every if callable(every) else (lambda e=float(every): e)
        job = _Job(name, step, interval, failed, logger, quiet)
        self._push(job, asyncio.get_running_loop().time() + first_s)

    def _push(self, job: _Job, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._order), job))
        if due < self._waiter_due and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # sleeping past it: look again

    async def run(self) -> None:
        """Background task: start each job when due, forever (cancel to stop)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Always through the loop, even when a job is already due: a round that
                # outlasts the next job's interval must not keep the loop from its I/O.
                await self._sleep(loop, self._heap[0][0] if self._heap else None)
                now = loop.time() + 1e-6  # a timer may fire a hair before its instant
                due: list[_Job] = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                for job in due:  # popped first: a job due again at once waits a turn
                    self._start(loop, job)
        finally:
            for t in self._finishing:
                t.cancel()
            if self._finishing:
                await asyncio.wait(self._finishing, timeout=1.0)

    async def _sleep(self, loop: asyncio.AbstractEventLoop, until: float | None) -> None:
        self._waiter = fut = loop.create_future()
        self._waiter_due = float("inf") if until is None else until
        timer = None if until is None else loop.call_at(until, _wake, fut)
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter, self._waiter_due = None, float("inf")

    def _start(self, loop: asyncio.AbstractEventLoop, job: _Job) -> None:
        try:
            if job.quiet is not None and job.quiet():
                self.skipped += 1
                self._again(loop, job)
                return
        except Exception:  # asking failed: the step decides
            job.logger.exception(job.failed)
        self.steps += 1
        coro = job.step()
        try:
            waiting = coro.send(None)
        except StopIteration:
            self._again(loop, job)
            return
        except Exception:  # a bad step must not stop supervision
            job.logger.exception(job.failed)
            self._again(loop, job)
            return
        except asyncio.CancelledError:  # the step cancelled itself; the job goes on
            self._again(loop, job)
            return
        task = loop.create_task(self._finish(loop, job, coro, waiting), name=job.name)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, loop: asyncio.AbstractEventLoop, job: _Job,
                      coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        """Carry on a step that waited, as its own task would have: wait for what it
        waits on, then resume it (the awaited future hands it the result itself)."""
        try:
            while True:
                if waiting is None:  # a bare yield (sleep(0)): one turn of the loop
                    await asyncio.sleep(0)
                else:
                    waiting._asyncio_future_blocking = False
                    with contextlib.suppress(BaseException):
                        # Cancelling this task cancels that future; the step then
                        # sees the CancelledError where it awaited, as in a task.
                        await waiting
                try:
                    waiting = coro.send(None)
                except StopIteration:
                    break
        except asyncio.CancelledError:
            raise  # the upkeep stops: so does the step (not due again)
        except Exception:
            job.logger.exception(job.failed)
        self._again(loop, job)

    def _again(self, loop: asyncio.AbstractEventLoop, job: _Job) -> None:
        if not job.stopped:
            due = loop.time() + max(0.0, job.every())
            # Rounded up to the grain: jobs due within it start in one wake-up, never early.
            self._push(job, math.ceil(due / GRAIN_S) * GRAIN_S)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
