"""Re-running one window of event time from a saved engine state: shared by export and verify,
so that the lapses in a pack and the lapses its events imply are computed the same way.

A lapse already open at the window's start is clipped to it (``clipped_start``);
one still open at its end is cut there (``clipped_end``).

Where retention purged the positions (the pack's ``purges.json``) the window has *no data*:
from the window's start (or a legal hold's end) to the purge's bound (or a hold's start),
plus ``stale_after_s`` after it, the time it takes the positions that remain to decide cover
again on their own (computed by :mod:`coverwatch.reports.purged`, which the daily report and
``/api/v1/report`` share). No lapse is derived there: a lapse crossing such a span is cut at its
edges (``purged_edge``; ``clipped_start``/``clipped_end`` set as at the window's edges).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.storedrows import batch_from_rows
from coverwatch.domain.time import format_time, seconds_to_us
from coverwatch.engine import RuleStats, restore_engine
from coverwatch.formats.sitefile import load_site_text_document
from coverwatch.reports.purged import cut_outside, spans_without_data

__all__ = ["cover_with_data", "no_data_spans", "run_window"]


def cover_with_data(st: RuleStats, since: int, until: int,
                    spans: Sequence[dict[str, Any]]) -> tuple[float | None, int]:
    """The share (%) of the rule's active time in [since, until] that was covered, leaving
    out the spans without data (purged: no cover can be known there), or None if it was
    never active outside them; and how long those spans cover (microseconds)."""
    cuts = sorted((max(int(s["start_us"]), since), min(int(s["end_us"]), until))
                  for s in spans)
    cuts = [(a, b) for a, b in cuts if b > a]
    active = covered = 0
    pts = st.timeline
    for i, p in enumerate(pts):
        a = max(p.t, since)
        b = min(pts[i + 1].t if i + 1 < len(pts) else until, until)
        if b <= a or p.state == "inactive":
            continue
        length = (b - a) - sum(max(0, min(b, y) - max(a, x)) for x, y in cuts)
        active += length
        covered += length if p.state == "covered" else 0
    return (None if active <= 0 else 100.0 * covered / active), sum(b - a for a, b in cuts)


def no_data_spans(
    versions: Sequence[dict[str, Any]], purges: Sequence[dict[str, Any]], since: int,
    until: int,
) -> list[dict[str, Any]]:
    """The spans of [since, until] without positions (see the module docstring), merged,
    each naming the purge records (``id``) that made it."""
    if not purges:
        return []
    site = load_site_text_document(versions[0]["source"], "<pack rule version>").site
    return spans_without_data(purges, since, until, seconds_to_us(site.stale_after_s))


def _cut(rec: dict[str, Any], grace: int, spans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parts of a lapse record outside every no-data span."""
    pieces = cut_outside(rec["start_us"], rec["end_us"], spans)
    out = []
    for a, b in pieces:
        if (a, b) == (rec["start_us"], rec["end_us"]):
            out.append(rec)
            continue
        alert = rec["alert_at"] if a == rec["start_us"] else (
            format_time(a + grace) if b - a > grace else None)
        out.append({**rec, "start": format_time(a), "end": format_time(b), "start_us": a,
                    "end_us": b, "alert_at": alert, "purged_edge": True,
                    "clipped_start": rec["clipped_start"] or a != rec["start_us"],
                    "clipped_end": rec["clipped_end"] or b != rec["end_us"]})
    return out


def run_window(
    versions: Sequence[dict[str, Any]], state: dict[str, Any], rows: list[dict[str, Any]],
    since: int, until: int, post: str | None = None,
    no_data: Sequence[dict[str, Any]] = (),
) -> tuple[list[dict[str, Any]], list[RuleStats]]:
    """Lapses (as records) and per-rule stats (with timelines) of [since, until].

    ``versions`` are ``{"effective_us", "source"}`` in order, the first being the
    one in force at ``since``; ``state`` the engine state at ``since``; ``no_data``
    the spans of :func:`no_data_spans`, where no lapse is derived.
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
    graces = {(p.id, r.id): seconds_to_us(r.grace_s) for s in sites for p, r in s.rules()}
    out: list[dict[str, Any]] = []
    for lp in engine.lapses:
        if post is not None and lp.post != post:
            continue
        if not (lp.start <= until and (lp.end is None or lp.end > since)):
            continue
        start, end = max(lp.start, since), until if lp.end is None else lp.end
        rec = {
            "post": lp.post, "rule": lp.rule, "start": format_time(start),
            "end": format_time(end), "start_us": start, "end_us": end,
            "alert_at": None if lp.alert_at is None else format_time(lp.alert_at),
            "min_cover": lp.min_cover, "clipped_start": lp.start < since,
            "clipped_end": lp.end is None,
        }
        out += _cut(rec, graces.get((lp.post, lp.rule), 0), no_data) if no_data else [rec]
    stats = [s for s in engine.stats + engine.retired_stats if post is None or s.post == post]
    return out, stats
