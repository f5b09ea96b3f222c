"""The ordering stage of replay: event batches into (t, seq) order for the engine.

Whole when the input fits the budget, else streaming within a disorder window;
see :func:`sorted_events`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from coverwatch.domain.events import ControlEvent, EventBatch, FixColumns
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.errors import OutOfOrderError

__all__ = ["NeedsFullSort", "sorted_events"]

I64 = npt.NDArray[np.int64]


class _Pending:
    """Events held for sorting: fixes as columns, control events with their keys."""

    def __init__(self) -> None:
        self.fixes: list[FixColumns] = []
        self.control: list[ControlEvent] = []
        self.count = 0

    def add(self, batch: EventBatch) -> None:
        if len(batch.fixes):
            self.fixes.append(batch.fixes)
        self.control.extend(batch.control)
        self.count += len(batch)

    def sorted(self) -> tuple[FixColumns, list[ControlEvent], I64, I64, npt.NDArray[np.intp]]:
        """All pending events in (t, seq) order: fixes, control, and the merged keys.

        The last array says, for each event in order, its index into the fixes
        (>= 0) or ``-1 - i`` for control event ``i``.
        """
        fixes = FixColumns.concat(self.fixes)
        if _in_order(fixes.t, fixes.seq):
            return (fixes, self.control, *_merge_sorted(fixes, self.control))
        ct = np.fromiter((e.t for e in self.control), np.int64, len(self.control))
        cs = np.fromiter((e.seq for e in self.control), np.int64, len(self.control))
        t = np.concatenate([fixes.t, ct])
        s = np.concatenate([fixes.seq, cs])
        where = np.concatenate(
            [np.arange(len(fixes), dtype=np.intp), -1 - np.arange(len(ct), dtype=np.intp)]
        )
        # Two stable passes equal lexsort by (t, seq) but are far quicker on input that
        # is already nearly in order (timsort finds the runs).
        by_seq = np.argsort(s, kind="stable")
        order = by_seq[np.argsort(t[by_seq], kind="stable")]
        return fixes, self.control, t[order], s[order], where[order]


def _in_order(t: I64, seq: I64) -> bool:
    """Whether rows are already in (t, seq) order: the common case, which needs no sort."""
    if len(t) < 2:
        return True
    dt = np.diff(t)
    return bool(((dt > 0) | ((dt == 0) & (np.diff(seq) > 0))).all())


def _merge_sorted(
    fixes: FixColumns, control: list[ControlEvent]
) -> tuple[I64, I64, npt.NDArray[np.intp]]:
    """Merge the few control events into fixes already in order (no full sort)."""
    n = len(fixes)
    if not control:
        return fixes.t, fixes.seq, np.arange(n, dtype=np.intp)
    order = sorted(range(len(control)), key=lambda i: (control[i].t, control[i].seq))
    ft, fs = fixes.t, fixes.seq
    pos = np.empty(len(order), np.intp)
    for k, i in enumerate(order):
        ev = control[i]
        lo = int(np.searchsorted(ft, ev.t, side="left"))
        hi = int(np.searchsorted(ft, ev.t, side="right"))
        pos[k] = lo + int(np.searchsorted(fs[lo:hi], ev.seq, side="left"))
    ct = np.fromiter((control[i].t for i in order), np.int64, len(order))
    cs = np.fromiter((control[i].seq for i in order), np.int64, len(order))
    where = np.insert(np.arange(n, dtype=np.intp), pos, -1 - np.asarray(order, np.intp))
    return np.insert(ft, pos, ct), np.insert(fs, pos, cs), where


def _emit(
    fixes: FixColumns,
    control: list[ControlEvent],
    where: npt.NDArray[np.intp],
    size: int,
) -> Iterator[EventBatch]:
    for lo in range(0, len(where), size):
        part = where[lo : lo + size]
        fix_idx = part[part >= 0]
        ctrl_idx = -1 - part[part < 0]
        rows: npt.NDArray[np.intp] | slice = fix_idx
        if len(fix_idx) and int(fix_idx[-1]) - int(fix_idx[0]) + 1 == len(fix_idx) \
                and bool((np.diff(fix_idx) == 1).all()):
            rows = slice(int(fix_idx[0]), int(fix_idx[-1]) + 1)  # in order: a view, no copy
        yield EventBatch(fixes.take(rows), [control[i] for i in ctrl_idx.tolist()])


def sorted_events(
    batches: Iterable[EventBatch],
    *,
    budget: int = 8_000_000,
    disorder_window_us: int = 60_000_000,
    optimistic: bool = False,
) -> Iterator[EventBatch]:
    """Yield the events of ``batches`` in ``(t, seq)`` order, input order for ties.

    With ``optimistic`` set, events are released as soon as they are older than
    the window, without waiting for the budget to fill, so evaluation can start
    at once; if the input then turns out to be out of order while still within
    the budget, :class:`NeedsFullSort` is raised and the caller must start again
    without ``optimistic`` (a file can be read twice). The result is the same.

    Up to ``budget`` events the input is sorted whole, however disordered. Past
    it, events are released once they are older than the latest time seen minus
    ``disorder_window_us``; an event earlier than one already released raises
    :class:`OutOfOrderError`. Yielded batches are each sorted and follow one another.
    """
    if disorder_window_us < 0:
        raise ValueError("disorder_window_us must be >= 0")
    pending = _Pending()
    size = 1
    seen = 0
    max_t: int | None = None
    released: tuple[int, int] | None = None  # (t, seq) of the last event released

    for batch in batches:
        if not len(batch):
            continue
        size = max(size, len(batch))
        seen += len(batch)
        bounds = batch.time_bounds()
        assert bounds is not None
        if released is not None:
            try:
                _check_order(batch, released, disorder_window_us)
            except OutOfOrderError as e:
                if optimistic and seen <= budget:
                    raise NeedsFullSort(str(e)) from None
                raise
        pending.add(batch)
        max_t = bounds[1] if max_t is None else max(max_t, bounds[1])
        if pending.count <= budget and not optimistic:
            continue
        fixes, control, t, s, where = pending.sorted()
        cut = int(np.searchsorted(t, max_t - disorder_window_us, side="left"))
        pending = _Pending()
        if cut < len(where):
            rest = where[cut:]
            rest_control = [control[i] for i in (-1 - rest[rest < 0]).tolist()]
            pending.add(EventBatch(fixes.take(rest[rest >= 0]), rest_control))
        if cut:
            released = (int(t[cut - 1]), int(s[cut - 1]))
            yield from _emit(fixes, control, where[:cut], size)

    if pending.count:
        fixes, control, _t, _s, where = pending.sorted()
        yield from _emit(fixes, control, where, size)


class NeedsFullSort(OutOfOrderError):
    """Optimistic streaming met disorder within the budget: sort the input whole."""


def _check_order(batch: EventBatch, released: tuple[int, int], window_us: int) -> None:
    rt, rs = released
    lines: list[tuple[int, int]] = []
    f = batch.fixes
    if len(f):
        early = (f.t < rt) | ((f.t == rt) & (f.seq < rs))
        if early.any():
            i = int(np.flatnonzero(early)[0])
            lines.append((int(f.seq[i]), int(f.t[i])))
    for ev in batch.control:
        if ev.t < rt or (ev.t == rt and ev.seq < rs):
            lines.append((ev.seq, ev.t))
            break
    if lines:
        seq, t = min(lines)
        err = OutOfOrderError(
            f"line {seq}: event at {format_time(t)} is earlier than events already "
            f"passed on ({format_time(rt)}); the input exceeds the disorder window of "
            f"{window_us / US_PER_S:g} s. Sort the file by time first (e.g. by `t`), "
            "or raise the disorder window or the in-memory sort budget"
        )
        err.line = seq  # type: ignore[attr-defined]
        raise err
