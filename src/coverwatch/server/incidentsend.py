"""Telling people about an incident: one message per level for all its members.

The grouping is the pure core's (:mod:`coverwatch.domain.incidents`); here the
incident's step is sent once, and each delivery is recorded on every member
present at the time, so each member's card says truthfully who was told. A
level that reached nobody moves the incident to its next level at once and
raises one ``notification-failure`` alert for the incident (not one per member).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from coverwatch.domain.incidents import IncidentStep, incident_message
from coverwatch.domain.time import format_time
from coverwatch.server.commands import EscalateNow
from coverwatch.storage import DeliveryRecord

if TYPE_CHECKING:
    from coverwatch.server.outbox import Outbox

__all__ = ["incident_json", "send_incident"]

log = logging.getLogger("coverwatch.server")


def _post_name(outbox: Outbox, post: str) -> str:
    try:
        p = outbox.view.site().post(post)
    except KeyError:
        return post
    return p.name or p.id


async def send_incident(outbox: Outbox, istep: IncidentStep) -> None:
    """Send one incident step; record it on every member; fail over as one."""
    from coverwatch.notify.notifier import Message

    view = outbox.view
    inc, step = istep.incident, istep.step
    title, body = incident_message(istep, lambda p: _post_name(outbox, p))
    key = f"{inc.id}/level-{istep.level + 1}"
    body += f"\nMessage id: {key} (the same id again is a repeat)"
    message = Message(step.alert_id, istep.level, step.targets, title, body, {
        "kind": "incident", "incident": inc.id, "cause": inc.cause, "level": istep.level,
        "members": list(istep.members), "posts": list(inc.posts),
        "started": format_time(inc.started), "at": format_time(step.at),
        "idempotency_key": key,
    })
    deliveries = await outbox.notifier.send_message(message)
    at = view.clock()
    recs = [DeliveryRecord(member, d.level, "escalation", ", ".join(d.targets), d.person, d.to,
                           d.ok, d.error, d.attempts, at)
            for member in istep.members for d in deliveries]
    try:
        await asyncio.to_thread(outbox.store.record_deliveries, recs)
    except Exception:  # keep them in memory: the cards must still tell the truth
        log.exception("could not store %d delivery record(s)", len(recs))
    for rec in recs:
        outbox.by_alert.setdefault(rec.alert_id, []).append(rec)
    outbox.delivered_total += sum(1 for d in deliveries if d.ok)
    outbox.failed_total += sum(1 for d in deliveries if not d.ok)
    for member in istep.members:
        view.feed.publish({"type": "notified", "alert_id": member, "purpose": "escalation",
                          "notified": outbox.notified(member),
                          "dispatches": outbox.dispatch_deliveries(member)})
    view.feed.publish({"type": "incident", "incident": inc.to_json(), "level": istep.level})
    if any(d.ok for d in deliveries):
        return
    done = await view.execute(EscalateNow(step.alert_id, istep.level))
    alert, nxt = done.alerts[0], done.step
    if nxt is not None:
        log.warning("incident %s: nobody reached at level %d; level %d now", inc.id,
                    istep.level + 1, nxt.level + 1)
        outbox.submit([nxt])
    if not alert.escalating:
        return
    reasons = "; ".join(f"{', '.join(d.targets)}{f' ({d.person})' if d.person else ''}: "
                        f"{d.error}" for d in deliveries)
    detail = (f"Nobody could be told about incident {inc.id} ({len(inc.members)} alerts, "
              f"{inc.cause}) at escalation level {istep.level + 1}: {reasons or 'no targets'}.")
    await outbox.raise_direct("notification-failure", alert.post, alert.rule, detail,
                              about=alert.id)


def incident_json(outbox: Outbox, alert_id: str) -> dict[str, Any] | None:
    """The incident an alert belongs to, for its card (None if it stands alone)."""
    inc = outbox.incidents.incident_of(alert_id)
    return None if inc is None else inc.to_json()
