"""Reports: lapses recomputed from everything stored, late events included.

The live engine cannot take an event behind its horizon without rewriting what
the control room already saw, so such an event is stored and flagged *late*.
A report re-evaluates the stored history from scratch with the same engine,
under the rules in force at each moment (every applied site version), so late
events count here.
"""

from __future__ import annotations

from dataclasses import dataclass

from coverwatch.domain.events import OfficerRegistry
from coverwatch.engine import CoverEngine, Lapse, RuleStats, sort_batch
from coverwatch.formats.sitefile import load_site_text_document
from coverwatch.server.live import batch_from_rows
from coverwatch.server.siteapply import SiteVersion
from coverwatch.storage import Store

__all__ = ["Report", "recompute"]

_ALL = -(1 << 62)


@dataclass(frozen=True, slots=True)
class Report:
    """Lapses overlapping [since, until], and per-rule totals from the first event to ``until``."""

    since: int
    until: int
    events: int
    late_events: int
    lapses: list[Lapse]
    stats: list[RuleStats]


def recompute(
    store: Store, versions: list[SiteVersion], *, until: int, since: int | None = None
) -> Report:
    """Re-evaluate every stored event up to ``until`` (inclusive)."""
    rows = store.events_between(_ALL, until + 1)
    sites = [load_site_text_document(v.source, "<stored site version>").site for v in versions]
    if not rows:
        return Report(since or until, until, 0, 0, [], [])
    batch = sort_batch(batch_from_rows(rows, OfficerRegistry()))
    bounds = batch.time_bounds()
    assert bounds is not None
    start = bounds[0]
    # The version in force at the first event, then each later switch in turn.
    first = max((i for i, v in enumerate(versions) if v.effective_us <= start), default=0)
    engine = CoverEngine(sites[first], start)
    engine.feed(batch)
    for version, site in zip(versions[first + 1 :], sites[first + 1 :], strict=True):
        if version.effective_us > until:
            break
        engine.advance(version.effective_us)
        engine.switch_site(site)
    engine.close(until)
    lo = start if since is None else since
    lapses = [lp for lp in engine.lapses if lp.start <= until and (lp.end is None or lp.end > lo)]
    late = sum(1 for r in rows if r["late"])
    return Report(lo, until, len(rows), late, lapses, engine.stats + engine.retired_stats)
