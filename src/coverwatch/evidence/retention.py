"""Retention of raw positions: the site's period, the daily purge, and legal holds.

The period (days) is set per site by an admin (``coverwatch retention set`` or
``PUT /api/v1/retention``) and kept in the server state; unset means positions are kept.
The server purges once a day; holds protect a range while they stand. Everything is audited
(docs/evidence.md, "Retention and legal holds").
"""

from __future__ import annotations

import asyncio
import logging

from coverwatch.errors import StoreError
from coverwatch.storage import Store
from coverwatch.storage.base import now_us

__all__ = ["RETENTION_KEY", "get_retention_days", "purge_now", "run_purge", "set_retention_days"]

RETENTION_KEY = "retention.positions_days"
DAY_US = 86_400 * 1_000_000
MIN_DAYS = 1.0
log = logging.getLogger("coverwatch.evidence")


def get_retention_days(store: Store) -> float | None:
    raw = store.get_state(RETENTION_KEY)
    return None if raw in (None, "") else float(raw)


def set_retention_days(store: Store, days: float | None, actor: str, site: str) -> None:
    """Set (or with None clear) the retention of raw positions; audited."""
    if days is not None and not (MIN_DAYS <= days <= 36_500):
        raise StoreError(f"retention must be between {MIN_DAYS:g} and 36500 days")
    old = get_retention_days(store)
    store.set_state(RETENTION_KEY, "" if days is None else repr(float(days)))
    store.audit_change(actor, "retention.set", f"site:{site}",
                       {"positions_days": days, "previous_days": old})


def purge_now(store: Store, actor: str, *, now: int | None = None) -> int | None:
    """Purge positions older than the period (None if no period is set)."""
    days = get_retention_days(store)
    if days is None:
        return None
    cutoff = (now_us() if now is None else now) - round(days * DAY_US)
    store.purge_dead_letters(cutoff, actor)  # kept no longer than the positions they carried
    return store.purge_positions(cutoff, actor, retention_days=days)


async def run_purge(store: Store, every_s: float = 86_400.0) -> None:
    """Background task: purge once a day (the first an hour after start)."""
    await asyncio.sleep(min(every_s, 3600.0))
    while True:
        try:
            removed = await asyncio.to_thread(purge_now, store, "server")
            if removed:
                log.info("retention: purged %d positions", removed)
        except Exception:  # the purge must never stop the server
            log.exception("retention purge failed")
        await asyncio.sleep(every_s)
