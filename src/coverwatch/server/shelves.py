"""Shelving alerts on the server: stored (server state), audited, and applied where
escalation steps are sent (see :mod:`coverwatch.domain.shelving`).

A shelf delays a notice; it does not cancel it (ISA-18.2: a shelved alarm that is still
active annunciates again when the shelf ends). Steps a shelf holds back are kept, and
sent when it ends (expired or taken off) if their alert still needs a person; an alert
acknowledged, resolved or closed meanwhile is not told about. Held steps are kept in
memory: after a restart the stored alerts' levels due without a delivery are sent by
the outbox's resend, as any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from coverwatch.domain.alertbook import AlertsRead
from coverwatch.domain.alerts import Escalation
from coverwatch.domain.shelving import Shelf, ShelfBook, make_shelf

if TYPE_CHECKING:
    from coverwatch.server.unit import SiteUnit
    from coverwatch.storage import Store
    from coverwatch.storage.startreads import SiteStart

__all__ = ["held_back", "load_shelves", "released", "shelve", "unshelve"]

log = logging.getLogger("coverwatch.server")

_KEY = "alerts.shelves"


def load_shelves(store: Store | SiteStart) -> ShelfBook:
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
    outbox = svc.outbox
    again = released(outbox.shelves, outbox.held, svc.clock(), svc.book)
    if again:
        outbox.submit(again, group=False)
    return gone


def held_back(book: ShelfBook, held: dict[str, list[Escalation]], now: int,
              steps: Sequence[Escalation]) -> list[Escalation]:
    """The steps to send: those of shelved alerts are held back (logged, kept in
    ``held`` until the shelf ends: :func:`released`)."""
    out = []
    for step in steps:
        shelf = book.holding(step.alert_id, step.kind, step.post, now)
        if shelf is None:
            out.append(step)
        else:
            held.setdefault(step.alert_id, []).append(step)
            log.info("alert %s level %d held: shelved by %s until %s (%s)", step.alert_id,
                     step.level + 1, shelf.by, shelf.to_json()["until"], shelf.reason)
    return out


def released(book: ShelfBook, held: dict[str, list[Escalation]], now: int,
             alerts: AlertsRead) -> list[Escalation]:
    """The held steps whose shelf has ended, of alerts still open (still escalating):
    to send now. Steps of alerts a person took or that ended meanwhile are let go."""
    if not held:
        return []
    out: list[Escalation] = []
    for alert_id, steps in list(held.items()):
        first = steps[0]
        if book.holding(alert_id, first.kind, first.post, now) is not None:
            continue
        del held[alert_id]
        alert = alerts.get(alert_id) if alert_id in alerts else None
        if alert is None or not alert.escalating:
            log.info("alert %s: %d held level(s) not sent, the alert is %s", alert_id,
                     len(steps), "gone" if alert is None else alert.state.value)
            continue
        log.info("alert %s: shelf ended, sending %d held level(s)", alert_id, len(steps))
        out += steps
    return out
