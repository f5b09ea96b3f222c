"""What retention purged, for reports and evidence packs alike: the purge records that touch a
window, the spans without data they leave, and lapses cut at those spans.

Shared by the daily report, ``GET /api/v1/report`` and evidence packs (``evidence/`` imports
it; ``reports/`` may not import ``evidence/``), so that all three say "no data (purged)" over
the same spans and derive no lapse there.

Each record is a ``purges`` row (written by the purge itself: on PostgreSQL only by the
definer function of migration 0014, on SQLite by the store in the same transaction), with
the legal holds that stood when it ran (their ranges were spared) and the ``retention.purged``
audit entry recorded with it, whose inclusion proof the pack carries: a purge record cannot
be made up after the fact without a logged entry to match.

Where retention purged the positions a window has *no data*: from the window's start (or a
legal hold's end) to the purge's bound (or a hold's start), plus ``stale_after_s`` after it,
the time it takes the positions that remain to decide cover again on their own
(:func:`spans_without_data`). No lapse is derived there: a lapse crossing such a span is cut
at its edges (:func:`cut_outside`), each piece marked ``purged_edge``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select

from coverwatch.domain.time import format_time
from coverwatch.engine import Lapse
from coverwatch.storage import Store
from coverwatch.storage.tables import audit, purges

__all__ = ["cut_lapse_records", "cut_outside", "purge_records", "purged_lapses",
           "spans_without_data"]


def purge_records(store: Store, since: int) -> list[dict[str, Any]]:
    """Every purge of the store's site that removed records at or after ``since``."""
    with store.reading() as conn:
        rows = conn.execute(select(purges).where(
            purges.c.site == store.site, purges.c.before_us > since,
        ).order_by(purges.c.id)).all()
        entries = conn.execute(select(audit).where(
            audit.c.site == store.site, audit.c.action == "retention.purged",
        ).order_by(audit.c.id)).all() if rows else []
    holds = store.holds() if rows else []
    logged = [{"id": int(e.id), "at": e.at, "actor": e.actor, "action": e.action,
               "subject": e.subject, "details": orjson.loads(e.details),
               "prev_hash": e.prev_hash, "hash": e.hash, "mac": e.mac} for e in entries]
    out, used = [], set()
    for r in rows:
        at = int(r.at_us)
        match = next((e for e in logged if e["id"] not in used
                      and e["details"].get("before_us") == int(r.before_us)
                      and e["details"].get("removed") == int(r.removed)), None)
        if match is not None:
            used.add(match["id"])
        out.append({
            "id": int(r.id), "what": r.what, "at": format_time(at), "at_us": at,
            "before": format_time(int(r.before_us)), "before_us": int(r.before_us),
            "removed": int(r.removed), "rule": r.rule, "actor": r.actor,
            "held": [[h.since_us, h.until_us] for h in holds if h.created_us <= at
                     and (h.released_us is None or h.released_us > at)],
            "audit": match,
        })
    return out


def spans_without_data(purges: Sequence[dict[str, Any]], since: int, until: int,
                       settle_us: int) -> list[dict[str, Any]]:
    """The spans of [since, until] without positions (see the module docstring), merged,
    each naming the purge records (``id``) that made it; ``settle_us``: the site's
    ``stale_after_s`` in microseconds."""
    raw: list[tuple[int, int, int]] = []
    for p in purges:
        if p.get("what") != "events:fix":
            continue
        gone = [(since, min(int(p["before_us"]), until))]
        for h0, h1 in p.get("held") or ():
            gone = [piece for a, b in gone
                    for piece in ((a, min(b, int(h0))), (max(a, int(h1)), b))]
        raw += [(a, min(b + settle_us, until), int(p["id"])) for a, b in gone if b > a]
    out: list[dict[str, Any]] = []
    for a, b, pid in sorted(raw):
        if out and a <= out[-1]["end_us"]:
            last = out[-1]
            last["end_us"] = max(last["end_us"], b)
            last["purges"] = sorted({*last["purges"], pid})
        else:
            out.append({"start_us": a, "end_us": b, "purges": [pid]})
    for s in out:
        s["start"], s["end"] = format_time(s["start_us"]), format_time(s["end_us"])
    return out


def cut_outside(start: int, end: int, spans: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """The parts of [start, end) outside every span."""
    pieces = [(start, end)]
    for s in spans:
        pieces = [q for a, b in pieces for q in ((a, min(b, int(s["start_us"]))),
                                                 (max(a, int(s["end_us"])), b)) if q[1] > q[0]]
    return pieces


def cut_lapse_records(lapses: Sequence[Lapse], spans: Sequence[dict[str, Any]],
                      graces: dict[tuple[str, str], int], until: int) -> list[dict[str, Any]]:
    """Reports' lapse records (``post, rule, start, end, alert_at, min_cover``) with no lapse
    where positions were purged: each lapse cut at the spans (a piece's alert is the
    lapse's own if it keeps its start, else its start plus the rule's grace if it lasts
    longer); a cut piece is marked ``purged_edge`` (every record has the field, so a table
    of them has the column). ``until``: where an open lapse ends."""
    out: list[dict[str, Any]] = []
    for lp in lapses:
        end = until if lp.end is None else lp.end
        rec: dict[str, Any] = {
            "post": lp.post, "rule": lp.rule, "start": format_time(lp.start),
            "end": None if lp.end is None else format_time(lp.end),
            "alert_at": None if lp.alert_at is None else format_time(lp.alert_at),
            "min_cover": lp.min_cover, "purged_edge": False}
        pieces = cut_outside(lp.start, end, spans)
        if pieces == [(lp.start, end)]:
            out.append(rec)
            continue
        grace = graces.get((lp.post, lp.rule), 0)
        for a, b in pieces:
            alert = rec["alert_at"] if a == lp.start else (
                format_time(a + grace) if b - a > grace else None)
            out.append({**rec, "start": format_time(a),
                        "end": rec["end"] if b == end else format_time(b),
                        "alert_at": alert, "purged_edge": True})
    return out


def purged_lapses(store: Store, lapses: Sequence[Lapse], since: int, until: int,
                  settle_us: int, graces: dict[tuple[str, str], int],
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The spans of [since, until] without data, and the lapses' records cut at them: what
    the daily report and ``/api/v1/report`` show, as an evidence pack would (a lapse open at
    ``since`` is cut over the purged time before it too)."""
    lo = min([since, *(lp.start for lp in lapses)])
    purged = purge_records(store, lo)
    if not purged:
        return [], cut_lapse_records(lapses, [], graces, until)
    shown = spans_without_data(purged, since, until, settle_us)
    return shown, cut_lapse_records(lapses, spans_without_data(purged, lo, until, settle_us),
                                    graces, until)
