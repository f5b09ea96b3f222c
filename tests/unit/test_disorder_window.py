"""The disorder window behaves the same at any chunk boundary (issue 25).

Input whose disorder stays within the window (no event more than the window
earlier than the latest one before it) is put in (t, seq) order whatever the
chunking, chunks of a single row included, and whatever the sort budget; an
OutOfOrderError is only ever raised for input that does exceed the window.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coverwatch.domain.events import EventBatch, FixColumns, FlagEvent
from coverwatch.errors import OutOfOrderError
from coverwatch.formats.eventfiles import sorted_events

WINDOW = 60


def batch_of(rows: list[tuple[int, int, bool]]) -> EventBatch:
    """Rows (t, seq, is a flag event) as one batch in input order."""
    fixes = [(t, s) for t, s, flag in rows if not flag]
    n = len(fixes)
    cols = FixColumns(
        np.array([t for t, _ in fixes], np.int64), np.zeros(n, np.int32),
        np.zeros(n), np.zeros(n), np.zeros(n), np.array([s for _, s in fixes], np.int64),
    )
    return EventBatch(cols, [FlagEvent(t, "f", True, s) for t, s, flag in rows if flag])


def chunked(rows: list[tuple[int, int, bool]], sizes: list[int]) -> list[EventBatch]:
    out = []
    lo = 0
    k = 0
    while lo < len(rows):
        size = sizes[k % len(sizes)]
        out.append(batch_of(rows[lo : lo + size]))
        lo += size
        k += 1
    return out


def keys(batches: list[EventBatch]) -> list[tuple[int, int]]:
    out = []
    for b in batches:
        merged = [(int(t), int(s)) for t, s in zip(b.fixes.t, b.fixes.seq, strict=True)]
        merged += [(e.t, e.seq) for e in b.control]
        out += sorted(merged)
    return out


def exceeds_window(times: list[int]) -> bool:
    latest = None
    for t in times:
        if latest is not None and t < latest - WINDOW:
            return True
        latest = t if latest is None else max(latest, t)
    return False


@st.composite
def inputs(draw: st.DrawFn, within: bool) -> list[tuple[int, int, bool]]:
    n = draw(st.integers(1, 40))
    times: list[int] = []
    latest = 0
    for _ in range(n):
        lo = latest - WINDOW if within else latest - 3 * WINDOW
        t = draw(st.integers(max(lo, 0), latest + 30))
        times.append(t)
        latest = max(latest, t)
    flags = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return [(t, seq, flag) for seq, (t, flag) in enumerate(zip(times, flags, strict=True), 1)]


SIZES = st.lists(st.integers(1, 12), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(inputs(within=True), SIZES, st.integers(0, 50), st.booleans())
def test_input_within_the_window_is_ordered_at_any_chunking(
    rows: list[tuple[int, int, bool]], sizes: list[int], budget: int, optimistic: bool
) -> None:
    expected = sorted((t, s) for t, s, _ in rows)
    for cut in (sizes, [1]):  # the drawn chunk sizes, and one row at a time
        out = list(sorted_events(chunked(rows, cut), budget=budget,
                                 disorder_window_us=WINDOW, optimistic=optimistic))
        assert keys(out) == expected


@settings(max_examples=300, deadline=None)
@given(inputs(within=False), SIZES, st.integers(0, 50))
def test_only_input_beyond_the_window_is_refused(
    rows: list[tuple[int, int, bool]], sizes: list[int], budget: int
) -> None:
    expected = sorted((t, s) for t, s, _ in rows)
    for cut in (sizes, [1]):
        try:
            out = list(sorted_events(chunked(rows, cut), budget=budget,
                                     disorder_window_us=WINDOW))
        except OutOfOrderError:
            assert exceeds_window([t for t, _, _ in rows])
            continue
        assert keys(out) == expected


def test_an_event_exactly_the_window_late_is_accepted_one_row_at_a_time() -> None:
    rows = [(0, 1, False), (100, 2, True), (200, 3, False), (140, 4, True), (140, 5, False)]
    out = list(sorted_events(chunked(rows, [1]), budget=0, disorder_window_us=WINDOW))
    assert keys(out) == sorted((t, s) for t, s, _ in rows)
