"""The roster and orders a tree head signs, and the pack's view of them.

A pack's ``roster.json`` and ``orders.json`` are records of the database, not of the log:
re-signed with the site's key they could be altered or thinned unseen. So each signed tree
head (from v 3) names ``briefing``, the SHA-256 of the canonical JSON of every shift, orders
version and orders acknowledgement of the site as of its leaves (:func:`briefing_records`),
and a pack carries that whole record as ``briefing.json``: the examiner checks its digest
against the head, and that ``roster.json`` and ``orders.json`` are exactly its view of the
pack's window and post (:func:`briefing_view`, which export itself uses).
"""

from __future__ import annotations

from typing import Any

from coverwatch.domain.time import format_time
from coverwatch.storage import Store

__all__ = ["briefing_records", "briefing_view"]


def briefing_records(store: Store) -> dict[str, Any]:
    """Every shift (by start, then id), orders version (by post, then since) and orders
    acknowledgement (by time, then id) of the store's site, as the head signs them."""
    return {
        "roster": [{"officer": s.officer, "post": s.post, "patrol": s.patrol,
                    "start": format_time(s.start), "end": format_time(s.end),
                    "start_us": s.start, "end_us": s.end} for s in store.list_shifts()],
        "versions": [{"post": v.post, "version": v.version, "since_us": v.since,
                      "since": format_time(v.since), "text": v.text,
                      "changes": None if v.changes is None else list(v.changes)}
                     for v in store.orders_versions()],
        "acknowledgements": [{"officer": a.officer, "post": a.post, "version": a.version,
                              "at": format_time(a.at), "at_us": a.at, "via": a.via,
                              "device": a.device} for a in store.acknowledgements()],
    }


def briefing_view(records: dict[str, Any], since: int, until: int,
                  post: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The pack's ``roster.json`` (shifts overlapping the window) and ``orders.json``
    (versions issued by its end, acknowledgements made by its end; of its post, if any)."""
    roster = [{k: r[k] for k in ("officer", "post", "patrol", "start", "end")}
              for r in records["roster"] if r["end_us"] > since and r["start_us"] < until]
    orders = {
        "versions": [v for v in records["versions"] if v["since_us"] <= until
                     and (post is None or v["post"] == post)],
        "acknowledgements": [{k: a[k] for k in ("officer", "post", "version", "at", "via",
                                                "device")}
                             for a in records["acknowledgements"] if a["at_us"] <= until
                             and (post is None or a["post"] == post)],
    }
    return roster, orders
