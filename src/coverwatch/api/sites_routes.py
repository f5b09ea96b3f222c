"""The all-sites board's data: each site of the deployment the caller may see, at a glance.

Per site: posts lapsed now, rules short but still in grace, alerts open or
acknowledged (SOS first), alerts to act on (counted as the control room counts
them), officers on duty without signal, events arriving late (per device), and
how far the engine trails the clock; a site whose engine is not keeping up says
so rather than showing stale cover as current.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from coverwatch.domain.alerts import DEVICE_ALARM_KINDS
from coverwatch.domain.time import format_time
from coverwatch.http.access import SUPERVISION, Principal, all_sites, require
from coverwatch.server.unit import SiteUnit

__all__ = ["needs_action", "router", "site_summary"]

router = APIRouter()


def needs_action(alert: Any) -> bool:
    """The control room's count of alerts to act on (web/static/js/control.js,
    ``needingAction``): open, or resolved before anyone acknowledged it (it waits to be
    closed). The board counts the same, so the two never disagree."""
    return alert.state.value == "open" or (alert.state.value == "resolved"
                                            and not alert.acknowledged_by)


def site_summary(svc: SiteUnit) -> dict[str, Any]:
    """One site's state at a glance (what the board shows)."""
    rules = svc.shown.cover_states()
    lag = svc.view_lag_s()
    lapsed_posts = sorted({r["post"] for r in rules if r["state"] == "lapsed"})
    live = [a for a in svc.book.alerts() if a.state.value in ("open", "acknowledged")]
    return {
        "id": svc.site.id,
        "name": svc.site.name,
        "timezone": svc.site.timezone,
        "horizon": format_time(svc.shown.horizon),
        # Not ready: no current cover to show (this node's engine, or its owner's state).
        "ready": svc.health.ready and lag is not None and lag <= svc.settings.max_engine_lag_s,
        "engine_lag_s": None if lag is None else round(lag, 1),
        "posts": len(svc.site.posts),
        "posts_lapsed": lapsed_posts,
        # What the board shows of them: the posts' names (the ids are detail only).
        "post_names": {p.id: p.name or p.id for p in svc.site.posts if p.id in lapsed_posts},
        "rules_in_grace": sum(1 for r in rules if r["state"] == "grace"),
        "alerts_open": sum(1 for a in live if a.state.value == "open"),
        "alerts_to_act_on": sum(1 for a in svc.book.alerts() if needs_action(a)),
        # Of those, resolved before anyone acknowledged them (shown apart from open ones).
        "alerts_resolved_unacknowledged": sum(
            1 for a in svc.book.alerts() if needs_action(a) and a.state.value == "resolved"),
        "alerts_acknowledged": sum(1 for a in live if a.state.value == "acknowledged"),
        "alarms_open": sum(1 for a in live if a.kind in DEVICE_ALARM_KINDS),
        "officers_on_duty": sum(1 for o in svc.shown.officers() if o.on_duty),
        "officers_without_signal": svc.shown.stale_officers(),
        "control_room": f"/control?site={svc.site.id}",
        # Events arriving behind the horizon: how many lately, and from which devices.
        "late": svc.shown.late.summary(svc.clock()),
        # Distributed mode: the worker evaluating the site (None: single process or unknown).
        "owner": None if svc.bus is None else svc.bus.owner,
    }


@router.get("/api/v1/sites")
async def sites(
    request: Request,
    who: Annotated[Principal, Depends(require(*SUPERVISION, anywhere=True))],
) -> dict[str, Any]:
    """The sites this caller has a supervision role at, what needs a person first."""
    shown = [svc for svc in all_sites(request).values()
             if who.roles_at(svc.store.site) & set(SUPERVISION)]
    for svc in shown:
        if svc.bus is not None:  # distributed: each owner's latest state
            await svc.bus.refresh_replica()
    out = [site_summary(svc) for svc in shown]
    # What needs a person first: alarms, alerts to act on, lapsed posts, rules in grace,
    # officers without signal, an engine not keeping up.
    out.sort(key=lambda s: (-s["alarms_open"], -s["alerts_to_act_on"], -len(s["posts_lapsed"]),
                            -s["rules_in_grace"], -s["officers_without_signal"], s["ready"],
                            s["name"]))
    return {"sites": out}
