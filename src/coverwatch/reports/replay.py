"""Replay: run recorded events through the engine, as `coverwatch replay` does.

This adapter joins the event-file readers (input order), the ordering stage
(sorted, bounded memory) and the engine. It feeds the engine in slices of a
few tens of thousands of fixes, which keeps numpy's working set in cache.
Given ``on_lapses``, closed lapses are handed out in order as soon as no
earlier one can still appear, so a long replay does not keep its lapses.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import IO, TYPE_CHECKING, TypeVar

import numpy as np
import orjson

from coverwatch.domain.events import EventBatch, OfficerRegistry
from coverwatch.domain.site import Site
from coverwatch.domain.time import format_time
from coverwatch.engine import CoverEngine, Evaluation, Lapse

if TYPE_CHECKING:
    from coverwatch.formats.eventfiles import EventReader
    from coverwatch.formats.gpx import GpxOptions

__all__ = [
    "ENGINE_SLICE", "READ_CHUNK_ROWS", "lapse_lines", "lapse_record", "prefetch", "replay_file",
    "replay_sorted",
]

ENGINE_SLICE = 131_072  # one window per read chunk (READ_CHUNK_ROWS)
# Rows per chunk read (JSONL: about 13 MiB of lines): a 1 M-row chunk cost 1.5-2x the
# peak memory and more page faults, for no less CPU.
READ_CHUNK_ROWS = 131_072

T = TypeVar("T")
LapseSink = Callable[[list[Lapse]], None]
_LAPSE_SLICE = 8_192
_SPILL_ROWS = 32_768
_NONE = -(2**63)  # no end (still open) or no alert, in _LapseOrder's columns


def lapse_record(lapse: Lapse,
                 fmt: Callable[[int], str] = format_time) -> dict[str, object]:
    """The JSON form of a lapse, as `replay --json` writes it (``fmt``: how a time is
    written; :func:`lapse_lines` passes a memo of it)."""
    return {
        "post": lapse.post,
        "rule": lapse.rule,
        "start": fmt(lapse.start),
        "end": None if lapse.end is None else fmt(lapse.end),
        "alert_at": None if lapse.alert_at is None else fmt(lapse.alert_at),
        "min_cover": lapse.min_cover,
    }


# Many lapses share a start, end or alert time: formatting each time once, not once per
# lapse, was most of the cost of writing a replay's lapses (pure, so a memo is safe).
_format_once = lru_cache(maxsize=65_536)(format_time)


def lapse_lines(lapses: Iterable[Lapse]) -> bytes:
    """The lines `replay --json` writes for ``lapses``: :func:`lapse_record` as JSON, each
    followed by a newline."""
    return b"".join(orjson.dumps(lapse_record(lp, _format_once)) + b"\n" for lp in lapses)


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, ``depth`` items ahead.

    Decoding the next chunk of input (pyarrow releases the GIL) then overlaps
    with evaluating this one. Exceptions are re-raised in the caller.
    """
    q: queue.Queue[tuple[str, object]] = queue.Queue(depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(("item", item))
            q.put(("end", None))
        except BaseException as e:  # handed to the consumer, not lost
            q.put(("error", e))

    thread = threading.Thread(target=work, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class _LapseOrder:
    """Closed lapses held until no earlier one can appear, then handed out sorted.

    The engine closes lapses in order of their ends; the output is in order of
    (start, post, rule). A lapse open since the first minute (a post never
    covered) holds back every later one until the end: those wait as five int64
    each (start, end, alert_at, lowest cover, post and rule), in a temporary
    file beyond `_SPILL_ROWS`, so that the read buffers are gone before they
    are loaded back and sorted.
    """

    def __init__(self, sink: LapseSink) -> None:
        self._sink = sink
        self._pairs: dict[tuple[str, str], int] = {}
        self._tail = array("q")
        self._spill: IO[bytes] | None = None
        self._spill_min: int | None = None  # earliest start in the spill file

    def take(self, engine: CoverEngine, *, final: bool = False) -> None:
        tail = self._tail
        for lp in engine.lapses:
            pair = self._pairs.setdefault((lp.post, lp.rule), len(self._pairs))
            tail.extend((lp.start, _NONE if lp.end is None else lp.end,
                         _NONE if lp.alert_at is None else lp.alert_at, lp.min_cover, pair))
        engine.lapses.clear()
        # Lapses not yet closed start at or after the oldest open one, and new ones
        # at or after the horizon.
        oldest = engine.oldest_open_lapse
        cut = engine.horizon if oldest is None else min(engine.horizon, oldest)
        rows = np.frombuffer(tail, np.int64).reshape(-1, 5)
        spilled = final or (self._spill_min is not None and self._spill_min < cut)
        if spilled:
            rows = np.concatenate((self._unspill(), rows))
        ready = np.ones(len(rows), bool) if final else rows[:, 0] < cut
        if not spilled and not ready.any() and len(rows) < _SPILL_ROWS:
            return
        kept = rows[~ready]
        if len(kept) >= _SPILL_ROWS:
            self._write_spill(kept)
            kept = kept[:0]
        out = rows[ready]
        del rows  # a view of the tail, which is replaced
        self._tail = array("q", kept.tobytes())
        names = list(self._pairs)
        rank = np.empty(len(names), np.int64)
        rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
        out = out[np.lexsort((rank[out[:, 4]], out[:, 0]))]
        # A slice at a time: all of a day's lapses as objects (and their JSON) at
        # once were the peak of a long replay.
        for lo in range(0, len(out), _LAPSE_SLICE):
            self._sink([
                Lapse(names[q][0], names[q][1], s, None if e == _NONE else e,
                      None if a == _NONE else a, m)
                for s, e, a, m, q in out[lo:lo + _LAPSE_SLICE].tolist()
            ])
        if final and self._spill is not None:
            self._spill.close()
            self._spill = None

    def _write_spill(self, rows: np.ndarray) -> None:
        if self._spill is None:
            self._spill = tempfile.TemporaryFile()  # noqa: SIM115 (closed at the end)
        self._spill.seek(0, os.SEEK_END)
        self._spill.write(rows.tobytes())
        low = int(rows[:, 0].min())
        self._spill_min = low if self._spill_min is None else min(self._spill_min, low)

    def _unspill(self) -> np.ndarray:
        if self._spill is None:
            return np.empty((0, 5), np.int64)
        self._spill.seek(0)
        rows = np.frombuffer(self._spill.read(), np.int64).reshape(-1, 5)
        self._spill.seek(0)
        self._spill.truncate()
        self._spill_min = None
        return rows


def replay_sorted(
    site: Site,
    batches: Iterable[EventBatch],
    *,
    until: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_lapses: LapseSink | None = None,
) -> Evaluation:
    """Evaluate sorted batches (non-decreasing ``t`` across batches).

    The window runs from the first event to the last one, or to ``until``;
    events after ``until`` are not evaluated. With ``on_lapses``, the lapses
    go to it along the way, in the order of ``Evaluation.lapses``, and the
    returned evaluation holds none.
    """
    order = None if on_lapses is None else _LapseOrder(on_lapses)
    engine: CoverEngine | None = None
    start: int | None = None
    last: int | None = None
    for batch in batches:
        fixes, control = batch.fixes, batch.control
        if until is not None:
            if len(fixes) and int(fixes.t[-1]) > until:
                fixes = fixes.take(fixes.t <= until)
            control = [e for e in control if e.t <= until]
        bounds = EventBatch(fixes, control).time_bounds()
        if bounds is None:
            if on_progress is not None:
                on_progress(len(batch))
            continue
        if engine is None:
            start = bounds[0]
            engine = CoverEngine(site, start, changes=False)  # no live feed to serve
        last = bounds[1] if last is None else max(last, bounds[1])
        engine.feed(EventBatch(fixes.take(slice(0, 0)), control))
        lo = 0
        while lo < len(fixes):
            nxt = lo + ENGINE_SLICE
            if nxt < len(fixes):
                # Whole instants per slice where one fits (nothing left over to copy
                # into the next window): cut where the instant the slice would split starts.
                cut = int(np.searchsorted(fixes.t, fixes.t[nxt]))
                nxt = cut if cut > lo else nxt
            part = fixes.take(slice(lo, nxt))
            engine.feed(EventBatch(part, []))
            # Events at the slice's last instant may continue in the next slice:
            # evaluate up to the next slice's first instant (not this one's last,
            # which would hold a whole slice back when it spans one instant).
            engine.advance(int(fixes.t[nxt]) if nxt < len(fixes) else int(part.t[-1]))
            lo = nxt
        if control:
            engine.advance(int(min(control[-1].t, last)))
        if order is not None:
            order.take(engine)
        if on_progress is not None:
            on_progress(len(batch))
    if engine is None or start is None or last is None:
        return Evaluation(None, until, [], CoverEngine(site, 0).stats)
    end = until if until is not None else last
    engine.close(end)
    if order is not None:
        order.take(engine, final=True)
    return Evaluation(start, end, engine.lapses, engine.stats)


def replay_file(
    site: Site,
    path: str | os.PathLike[str],
    *,
    skip_bad: bool = False,
    budget: int = 8_000_000,
    disorder_window_us: int = 60_000_000,
    until: int | None = None,
    on_start: Callable[[EventReader], None] | None = None,
    on_progress: Callable[[EventReader], None] | None = None,
    gpx: GpxOptions | None = None,
    on_lapses: LapseSink | None = None,
) -> tuple[Evaluation, EventReader]:
    """Replay an event file: read (in a background thread), order, evaluate.

    Ordered input, the usual case, streams straight into the engine. If the
    file turns out to be out of order within the sort budget, it is read again
    and sorted whole, so the result never depends on which way was taken.
    ``on_lapses`` is as for :func:`replay_sorted`; it is given each lapse once,
    even when the file is read twice.
    """
    from coverwatch.formats.eventfiles import NeedsFullSort, read_events, sorted_events

    for optimistic in (True, False):
        # Chunks no larger than the budget, so the budget bounds memory on its own, and
        # small enough that reading the next overlaps evaluating this one.
        reader = read_events(path, site, OfficerRegistry(), skip_bad=skip_bad,
                             chunk_rows=max(1_000, min(READ_CHUNK_ROWS, budget)), gpx=gpx)
        if on_start is not None:
            on_start(reader)
        ordered = sorted_events(
            prefetch(reader), budget=budget, disorder_window_us=disorder_window_us,
            optimistic=optimistic,
        )
        # The first pass may still be abandoned until more than `budget` events have
        # gone through (NeedsFullSort): its lapses are held back until then.
        held: list[Lapse] = []
        fed = [0]

        def tick(n: int, reader: EventReader = reader, fed: list[int] = fed) -> None:
            fed[0] += n
            if on_progress is not None:
                on_progress(reader)

        def hand(lapses: list[Lapse], held: list[Lapse] = held, fed: list[int] = fed,
                 optimistic: bool = optimistic) -> None:
            assert on_lapses is not None
            if optimistic and fed[0] <= budget:
                held.extend(lapses)
                return
            if held:
                on_lapses(held[:])
                held.clear()
            on_lapses(lapses)

        try:
            result = replay_sorted(site, ordered, until=until, on_progress=tick,
                                   on_lapses=None if on_lapses is None else hand)
        except NeedsFullSort:
            continue
        if held:
            assert on_lapses is not None
            on_lapses(held)
        return result, reader
    raise AssertionError("unreachable: the second pass sorts whole")
