"""Replay: run recorded events through the engine, as `coverwatch replay` does.

This adapter joins the event-file readers (input order), the ordering stage
(sorted, bounded memory) and the engine. It feeds the engine in slices of a
few tens of thousands of fixes, which keeps numpy's working set in cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from coverwatch.domain.events import EventBatch
from coverwatch.domain.site import Site
from coverwatch.engine import CoverEngine, Evaluation

__all__ = ["ENGINE_SLICE", "replay_sorted"]

ENGINE_SLICE = 50_000


def replay_sorted(
    site: Site,
    batches: Iterable[EventBatch],
    *,
    until: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Evaluate sorted batches (non-decreasing ``t`` across batches).

    The window runs from the first event to the last one, or to ``until``;
    events after ``until`` are not evaluated.
    """
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
            engine = CoverEngine(site, start)
        last = bounds[1] if last is None else max(last, bounds[1])
        engine.feed(EventBatch(fixes.take(slice(0, 0)), control))
        for lo in range(0, max(len(fixes), 1), ENGINE_SLICE):
            part = fixes.take(slice(lo, lo + ENGINE_SLICE))
            if len(part):
                engine.feed(EventBatch(part, []))
                # Events at the slice's last instant may continue in the next slice.
                engine.advance(int(part.t[-1]))
        if control:
            engine.advance(int(min(control[-1].t, last)))
        if on_progress is not None:
            on_progress(len(batch))
    if engine is None or start is None or last is None:
        return Evaluation(None, until, [], CoverEngine(site, 0).stats)
    end = until if until is not None else last
    engine.close(end)
    return Evaluation(start, end, engine.lapses, engine.stats)

