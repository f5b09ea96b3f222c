"""Whole-input evaluation: sort, run the engine once, collect the results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coverwatch.domain.events import EventBatch
from coverwatch.domain.site import Site
from coverwatch.engine._cover import CoverEngine
from coverwatch.engine.results import Lapse, RuleStats

__all__ = ["Evaluation", "evaluate", "sort_batch"]


@dataclass(slots=True)
class Evaluation:
    """The lapses and per-rule statistics of one window."""

    start: int | None
    end: int | None
    lapses: list[Lapse]
    stats: list[RuleStats]


def sort_batch(batch: EventBatch) -> EventBatch:
    """The batch sorted stably by (t, seq)."""
    fixes = batch.fixes
    if len(fixes) > 1:
        fixes = fixes.take(np.lexsort((fixes.seq, fixes.t)))
    control = sorted(batch.control, key=lambda e: (e.t, e.seq))
    return EventBatch(fixes, control)


def evaluate(
    site: Site, batch: EventBatch, *, end: int | None = None, timeline: bool = False,
    compiled: bool = True,
) -> Evaluation:
    """Evaluate every rule over the window [first event, ``end`` or last event].

    Events after an explicit ``end`` are ignored. ``compiled=False`` keeps to numpy's
    membership pass (see :class:`CoverEngine`).
    """
    bounds = batch.time_bounds()
    if bounds is None:
        engine = CoverEngine(site, 0)
        return Evaluation(None, end, [], engine.stats)
    start, last = bounds
    if end is None:
        end = last
    engine = CoverEngine(site, start, timeline=timeline, compiled=compiled, changes=False)
    engine.feed(sort_batch(batch))
    engine.close(end)
    return Evaluation(start, end, engine.lapses, engine.stats)
