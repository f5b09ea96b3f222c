"""Reports: lapses recomputed from what is stored, late events included, fast over months.

The live engine cannot take an event behind its horizon without rewriting what
the control room already saw, so such an event is stored and flagged *late*.
A report re-evaluates the stored history with the same engine, under the rules
in force at each moment (every applied site version), so late events count here.

So that a report's cost does not grow with the age of the deployment, the run
saves the engine's state at every whole ``CHECKPOINT_EVERY_US`` of event time it
passes (``storage/keeping.py``), and a later report starts from the newest
checkpoint at or before its ``since`` instead of the first stored event. Storing
any event earlier than a checkpoint drops that checkpoint, so the result is
always exactly a full recompute's (tests/unit/test_checkpoints.py shows it).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.site import Site
from coverwatch.domain.storedrows import batch_from_rows
from coverwatch.engine import CoverEngine, Lapse, RuleStats, engine_state, restore_engine
from coverwatch.formats.sitefile import load_site_text_document
from coverwatch.storage import Store
from coverwatch.storage.keeping import Checkpoint
from coverwatch.storage.versions import SiteVersion

__all__ = ["CHECKPOINT_EVERY_US", "EngineRun", "Report", "recompute", "run_engine", "version_sha"]

_ALL = -(1 << 62)
CHECKPOINT_EVERY_US = 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class Report:
    """Lapses overlapping [since, until], and per-rule totals from the first event to ``until``."""

    since: int
    until: int
    events: int
    late_events: int
    lapses: list[Lapse]
    stats: list[RuleStats]
    # Where evaluation began: a checkpoint's time, or the first stored event's.
    started_at: int | None = None


def version_sha(v: SiteVersion) -> str:
    return hashlib.sha256(v.source.encode()).hexdigest()


@dataclass(slots=True)
class EngineRun:
    """An engine positioned at ``horizon`` with the version index in force and its officers."""

    engine: CoverEngine
    registry: OfficerRegistry
    version: int
    events: int
    late: int
    started_at: int


class _Sites:
    def __init__(self, versions: list[SiteVersion]) -> None:
        self.versions = versions
        self._cache: dict[int, Site] = {}

    def site(self, i: int) -> Site:
        if i not in self._cache:
            src = self.versions[i].source
            self._cache[i] = load_site_text_document(src, "<stored site version>").site
        return self._cache[i]


def _windows(store: Store, lo: int, hi: int, step: int) -> Iterator[list[dict[str, Any]]]:
    """Stored events with ``lo <= t < hi`` in time order, a window of ``step`` at a time:
    months of history are evaluated without ever holding them all in memory."""
    a = lo
    while a < hi:
        b = min(hi, a + step)
        rows = store.engine_rows(a, b)
        if rows:
            yield rows
            a = b
            continue
        # Nothing here: step straight to the next event (years of nothing cost one query).
        nxt = store.next_event_us(b, hi)
        if nxt is None:
            return
        a = max(b, nxt - nxt % step if step > 0 else nxt)


def _resume(store: Store, sites: _Sites, at_or_before: int, timeline: bool) -> EngineRun | None:
    cp = store.checkpoint_at_or_before(at_or_before)
    if cp is None:
        return None
    for i, v in enumerate(sites.versions):
        if v.effective_us == cp.version_us and version_sha(v) == cp.version_sha:
            state = cp.state
            try:
                engine = restore_engine(sites.site(i), state["engine"], timeline=timeline)
            except (KeyError, ValueError):
                return None
            reg = OfficerRegistry(state["engine"]["officers"])
            return EngineRun(engine, reg, i, int(state["events"]), int(state["late"]), cp.at_us)
    return None


def _switch_versions(run: EngineRun, versions: list[SiteVersion], sites: _Sites,
                     upto: int) -> None:
    """Put in force every site version effective at or before ``upto``."""
    while run.version + 1 < len(versions) and versions[run.version + 1].effective_us <= upto:
        run.version += 1
        run.engine.advance(versions[run.version].effective_us)
        run.engine.switch_site(sites.site(run.version))


def run_engine(
    store: Store, versions: list[SiteVersion], *, to: int, resume_before: int | None,
    save_until: int | None = None, every_us: int = CHECKPOINT_EVERY_US, timeline: bool = False,
    close: bool = True,
) -> tuple[EngineRun | None, int]:
    """Evaluate stored events up to ``to`` (inclusive if ``close``, else exclusive).

    Starts from the newest checkpoint at or before ``resume_before`` (None: from
    the first event) and saves a checkpoint at each whole ``every_us`` passed up
    to ``save_until``. Returns the run (None if there are no events) and how many
    stored events it evaluated.
    """
    sites = _Sites(versions)
    max_id = store.max_event_id()
    run = None if resume_before is None else _resume(store, sites, resume_before, timeline)
    end = to + 1 if close else to
    if run is None:
        start = store.first_event_us(end)
        if start is None:
            return None, 0
        first = max((i for i, v in enumerate(versions) if v.effective_us <= start), default=0)
        run = EngineRun(CoverEngine(sites.site(first), start, timeline=timeline),
                        OfficerRegistry(), first, 0, 0, start)
    h = run.engine.horizon
    save_to = min(save_until if save_until is not None else to, to)
    bounds = list(range((h // every_us + 1) * every_us, save_to + 1, every_us))
    saved = set(store.checkpoint_times()) if bounds else set()
    evaluated = 0
    starts, ends = [run.started_at, *bounds], [*bounds, None]
    i = 0
    while i < len(starts):
        a, b = starts[i], ends[i]
        i += 1
        # The engine is chunk-invariant: feeding a segment in windows changes nothing.
        for chunk in _windows(store, a, end if b is None else b, every_us):
            run.engine.feed(batch_from_rows(chunk, run.registry,
                                            scan_growth=run.engine.site.scan_walk_mps))
            run.events += len(chunk)
            run.late += sum(1 for r in chunk if r["late"])
            evaluated += len(chunk)
        limit = to + 1 if b is None else b
        _switch_versions(run, versions, sites, b if b is not None else to)
        if b is None:
            break
        run.engine.advance(limit)
        if b not in saved:  # a saved one is still valid: a late event would have dropped it
            v = versions[run.version]
            state = {"engine": engine_state(run.engine, list(run.registry.names)),
                     "events": run.events, "late": run.late}
            store.save_checkpoint(Checkpoint(b, v.effective_us, version_sha(v), max_id, state))
        # Step over whole segments without events (one old event must not cost a
        # checkpoint and a query per hour until now): on to the next event's segment.
        nxt = store.next_event_us(b, end)
        target = len(bounds) if nxt is None else bisect.bisect_right(bounds, nxt)
        if target > i:
            i = target
            _switch_versions(run, versions, sites, starts[i])
            run.engine.advance(starts[i])
    if close:
        run.engine.close(to)
    else:
        run.engine.advance(to)
    return run, evaluated


def recompute(
    store: Store, versions: list[SiteVersion], *, until: int, since: int | None = None,
    checkpoints: bool = True, save_until: int | None = None,
    every_us: int = CHECKPOINT_EVERY_US,
) -> Report:
    """Lapses overlapping [since, until] and totals to ``until``, late events included.

    With ``checkpoints`` (the default) evaluation resumes from the newest saved
    state at or before ``since`` and saves new ones up to ``save_until``
    (default ``until``); without, every stored event is evaluated afresh.
    """
    if not versions:
        raise ValueError("no site version to evaluate under")
    resume = since if checkpoints and since is not None else None
    if not checkpoints:
        save_until = _ALL
    run, _ = run_engine(store, versions, to=until, resume_before=resume, save_until=save_until,
                        every_us=every_us)
    if run is None:
        return Report(since or until, until, 0, 0, [], [])
    engine = run.engine
    lo = run.started_at if since is None else since
    lapses = [lp for lp in engine.lapses if lp.start <= until and (lp.end is None or lp.end > lo)]
    return Report(lo, until, run.events, run.late, lapses,
                  engine.stats + engine.retired_stats, run.started_at)
