"""What retention purged, for an evidence pack: the purge records that touch a window.

Each record is a ``purges`` row (written by the purge itself: on PostgreSQL only by the
definer function of migration 0014, on SQLite by the store in the same transaction), with
the legal holds that stood when it ran (their ranges were spared) and the ``retention.purged``
audit entry recorded with it, whose inclusion proof the pack carries: a purge record cannot
be made up after the fact without a logged entry to match.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from coverwatch.domain.time import format_time
from coverwatch.storage import Store
from coverwatch.storage.tables import audit, purges

__all__ = ["purge_records"]


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
