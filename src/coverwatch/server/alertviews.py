"""Alerts as the API and the dashboard show them: the record, who was notified
per level (and whether it worked), dispatches, and who to send."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coverwatch.domain.alerts import Alert, AlertState
from coverwatch.domain.dispatchmarks import dispatch_marks
from coverwatch.domain.where import where_words
from coverwatch.server.incidentsend import incident_json
from coverwatch.server.live import OfficerView
from coverwatch.server.nearest import ReachCache, nearest_officers

if TYPE_CHECKING:
    from coverwatch.server.unit import SiteUnit

__all__ = ["alert_json", "alert_where", "alerts_json", "roster_now", "where_text"]

_CACHE = ReachCache()


def roster_now(svc: SiteUnit) -> dict[str, str]:
    """Each rostered officer's entry now: ``"post gate"`` or ``"patrol perimeter"``."""
    briefing = svc.briefing
    if briefing is None:
        return {}
    now = svc.clock()
    out: dict[str, str] = {}
    for s in getattr(briefing, "shifts", ()):
        if s.start <= now < s.end:
            out[s.officer] = f"post {s.post}" if s.post else f"patrol {s.patrol}"
    return out


def alert_where(svc: SiteUnit, alert: Alert) -> dict[str, Any] | None:
    """Where the alert is, in words: an officer's last position relative to the nearest
    post (SOS, fall, silent device), or the lapsed post itself; None for server alerts."""
    details = alert.details or {}
    if "position" in details:
        return where_words(details.get("position"), svc.site.posts, alert.lapse_start).to_json()
    if alert.post:
        try:
            post = svc.site.post(alert.post)
        except KeyError:
            return {"post": alert.post, "text": f"at {alert.post}"}
        return {"post": post.id, "post_name": post.name or post.id,
                "text": f"at {post.name or post.id}"}
    return None


def where_text(svc: SiteUnit, alert_id: str) -> str | None:
    """The notifier's ``where_of``: the words for an alert's position."""
    if alert_id not in svc.book:
        return None
    where = alert_where(svc, svc.book.get(alert_id))
    return None if where is None else str(where["text"])


def alert_json(svc: SiteUnit, alert: Alert, *, views: Sequence[OfficerView] | None = None,
               roster: dict[str, str] | None = None, nearest: int = 5,
               cover: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One alert with ``notified`` (per level), ``reached_level``, ``dispatches`` and,
    for a lapse still short of cover, ``nearest`` (who to send)."""
    out = alert.to_record()
    outbox = svc.outbox
    out["notified"] = outbox.notified(alert.id)
    out["reached_level"] = outbox.reached_level(alert.id)
    out["dispatches"] = outbox.sent.get(alert.id, [])
    out["dispatch_deliveries"] = outbox.dispatch_deliveries(alert.id)
    out["incident"] = incident_json(outbox, alert.id)
    out["where"] = alert_where(svc, alert)
    shelf = outbox.shelves.holding(alert.id, alert.kind, alert.post, svc.clock())
    out["shelved"] = None if shelf is None else shelf.to_json()
    if alert.kind == "lapse" and alert.state in (AlertState.OPEN, AlertState.ACKNOWLEDGED):
        out["nearest"] = [c.to_json() for c in nearest_officers(
            svc.live, alert.post, alert.rule, roster=roster_now(svc) if roster is None else roster,
            limit=nearest, cache=_CACHE, views=views)]
        if out["nearest"]:  # marked: their own post lapsed, or a hard rule they hold
            states = svc.shown.cover_states() if cover is None else cover
            names = {p.id: p.name or p.id for p in svc.site.posts}
            for c in out["nearest"]:
                c["marks"] = dispatch_marks(c, states, names)
    else:
        out["nearest"] = []
    return out


def alerts_json(svc: SiteUnit, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    """Several alerts; the officers' state is computed once for all of them."""
    views = svc.live.officers() if any(a.kind == "lapse" for a in alerts) else []
    roster = roster_now(svc)
    cover = svc.shown.cover_states() if views else []
    return [alert_json(svc, a, views=views, roster=roster, cover=cover) for a in alerts]
