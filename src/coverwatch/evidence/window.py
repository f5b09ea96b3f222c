"""Re-running one window of event time from a saved engine state: shared by export and verify,
so that the lapses in a pack and the lapses its events imply are computed the same way.

A lapse already open at the window's start is clipped to it (``clipped_start``);
one still open at its end is cut there (``clipped_end``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.storedrows import batch_from_rows
from coverwatch.domain.time import format_time
from coverwatch.engine import RuleStats, restore_engine
from coverwatch.formats.sitefile import load_site_text_document

__all__ = ["run_window"]


def run_window(
    versions: Sequence[dict[str, Any]], state: dict[str, Any], rows: list[dict[str, Any]],
    since: int, until: int, post: str | None = None,
) -> tuple[list[dict[str, Any]], list[RuleStats]]:
    """Lapses (as records) and per-rule stats (with timelines) of [since, until].

    ``versions`` are ``{"effective_us", "source"}`` in order, the first being the
    one in force at ``since``; ``state`` the engine state at ``since``.
    """
    sites = [load_site_text_document(v["source"], "<pack rule version>").site for v in versions]
    engine = restore_engine(sites[0], state, timeline=True)
    registry = OfficerRegistry(state["officers"])
    engine.feed(batch_from_rows(rows, registry, scan_growth=sites[0].scan_walk_mps))
    for v, site in zip(versions[1:], sites[1:], strict=True):
        if int(v["effective_us"]) > until:
            break
        engine.advance(int(v["effective_us"]))
        engine.switch_site(site)
    engine.close(until)
    out = []
    for lp in engine.lapses:
        if post is not None and lp.post != post:
            continue
        if not (lp.start <= until and (lp.end is None or lp.end > since)):
            continue
        start, end = max(lp.start, since), until if lp.end is None else lp.end
        out.append({
            "post": lp.post, "rule": lp.rule, "start": format_time(start),
            "end": format_time(end), "start_us": start, "end_us": end,
            "alert_at": None if lp.alert_at is None else format_time(lp.alert_at),
            "min_cover": lp.min_cover, "clipped_start": lp.start < since,
            "clipped_end": lp.end is None,
        })
    stats = [s for s in engine.stats + engine.retired_stats if post is None or s.post == post]
    return out, stats
