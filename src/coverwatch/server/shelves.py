"""Shelving alerts on the server: stored (server state), audited, and applied where
escalation steps are sent (see :mod:`coverwatch.domain.shelving`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from coverwatch.domain.alerts import Escalation
from coverwatch.domain.shelving import Shelf, ShelfBook, make_shelf

if TYPE_CHECKING:
    from coverwatch.server.unit import SiteUnit
    from coverwatch.storage import Store

__all__ = ["held_back", "load_shelves", "shelve", "unshelve"]

log = logging.getLogger("coverwatch.server")

_KEY = "alerts.shelves"


def load_shelves(store: Store) -> ShelfBook:
    """The site's shelves as stored (read at start-up, with the deliveries)."""
    text = store.get_state(_KEY)
    return ShelfBook.from_records(orjson.loads(text) if text else [])


async def shelve(svc: SiteUnit, subject: str, minutes: float, reason: str, by: str) -> Shelf:
    """Set a shelf: stored and audited before it takes effect."""
    shelf = make_shelf(subject, minutes, reason, by, svc.clock())
    book = svc.outbox.shelves
    trial = ShelfBook.from_records(book.to_records())
    trial.add(shelf)
    await asyncio.to_thread(svc.store.set_state, _KEY, orjson.dumps(trial.to_records()).decode())
    await asyncio.to_thread(svc.store.append_audit, by, "alert.shelved", subject,
                            shelf.to_json())
    book.add(shelf)
    svc.feed.publish({"type": "shelved", **shelf.to_json()})
    return shelf


async def unshelve(svc: SiteUnit, subject: str, by: str) -> Shelf | None:
    """End a shelf early (stored, audited)."""
    book = svc.outbox.shelves
    trial = ShelfBook.from_records(book.to_records())
    gone = trial.remove(subject)
    if gone is None:
        return None
    await asyncio.to_thread(svc.store.set_state, _KEY, orjson.dumps(trial.to_records()).decode())
    await asyncio.to_thread(svc.store.append_audit, by, "alert.unshelved", subject,
                            gone.to_json())
    book.remove(subject)
    svc.feed.publish({"type": "unshelved", "subject": subject})
    return gone


def held_back(book: ShelfBook, now: int, steps: Sequence[Escalation]) -> list[Escalation]:
    """The steps to send: those of shelved alerts are held (logged, not sent)."""
    out = []
    for step in steps:
        shelf = book.holding(step.alert_id, step.kind, step.post, now)
        if shelf is None:
            out.append(step)
        else:
            log.info("alert %s level %d not sent: shelved by %s until %s (%s)", step.alert_id,
                     step.level + 1, shelf.by, shelf.to_json()["until"], shelf.reason)
    return out
