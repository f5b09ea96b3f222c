"""Alert routes that tell who was notified and who to send.

* ``GET /api/v1/alerts`` and ``GET /api/v1/alerts/{id}``: each alert with
  ``notified`` (per escalation level: deliveries and whether any worked),
  ``reached_level``, ``dispatches`` and ``nearest`` (officers who would count
  for the rule, ranked by travel time);
* ``POST /api/v1/alerts/{id}/dispatch``: send an officer to the alert's post
  (stored, audited, then delivered to the officer's contacts and /duty page);
* ``GET /api/v1/me/dispatches``: an officer's instructions;
* ``POST /api/v1/alerts/{id}/shelve`` and ``POST /api/v1/posts/{post}/shelve``
  (``{minutes, reason}``): hold an alert's (or a post's) notifications for a set
  time, with a reason, audited; ``DELETE`` the same path ends the shelf.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from coverwatch.api.idempotency import IdempotencyKey, once
from coverwatch.domain.alerts import Alert, AlertState, UnknownAlertError
from coverwatch.domain.incidents import Incident
from coverwatch.domain.shelving import MAX_SHELF_MIN, ShelvingError, may_shelve
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.http.access import SUPERVISION, Principal, require, site_unit
from coverwatch.http.problems import problems
from coverwatch.server.alertviews import alert_json, alerts_json
from coverwatch.server.handlers import acknowledge
from coverwatch.server.unit import SiteUnit

__all__ = ["router"]

router = APIRouter()

Svc = Annotated[SiteUnit, Depends(site_unit)]
# Instructions older than this are not shown on the officer's page.
_DUTY_WINDOW_US = 12 * 3600 * US_PER_S


class ShelveBody(BaseModel):
    minutes: float = Field(ge=1, le=MAX_SHELF_MIN)
    reason: str = Field(min_length=3, max_length=500)


class Dispatch(BaseModel):
    officer: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=500)


@router.get("/api/v1/alerts")
async def list_alerts(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))],
    state: str | None = None,
) -> dict[str, Any]:
    wanted = None if state is None else set(state.split(","))
    # The book holds every alert not closed: only closed ones may be older, in the store.
    alerts = svc.book.alerts() if wanted is not None and "closed" not in wanted \
        else await asyncio.to_thread(_every_alert, svc)
    if wanted is not None:
        alerts = [a for a in alerts if a.state.value in wanted]
    return {"alerts": alerts_json(svc, alerts)}


def _every_alert(svc: SiteUnit) -> list[Alert]:
    """The book's alerts and the stored older ones it does not hold (a start reads only
    those not closed and the last 168 h), by alert time then id."""
    if svc.book.held_since is None:
        return svc.book.alerts()  # it holds them all
    held = {a.id: a for a in svc.book.alerts()}
    older = [Alert.from_record(r) for r in svc.store.load_alerts() if r["id"] not in held]
    return sorted([*held.values(), *older], key=lambda a: (a.alert_at, a.id))


@router.get("/api/v1/alerts/{alert_id}", responses=problems(404))
async def get_alert(
    alert_id: str, svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))],
) -> dict[str, Any]:
    try:
        alert = svc.book.get(alert_id)
    except UnknownAlertError:
        raise HTTPException(404, f"no alert {alert_id}") from None
    return alert_json(svc, alert, nearest=10)


@router.post("/api/v1/alerts/{alert_id}/dispatch", status_code=201,
             responses=problems(400, 404, 409, 422))
async def dispatch(
    alert_id: str, body: Dispatch, svc: Svc, request: Request,
    who: Annotated[Principal, Depends(require("supervisor", "admin"))],
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Send an officer to the alert's post; the message goes to their contacts and /duty.
    With an ``Idempotency-Key`` header a retry sends them once (docs/server.md)."""
    return await once(request, svc, who, body,
                      lambda: _dispatch(alert_id, body, svc, who), status=201)


async def _dispatch(alert_id: str, body: Dispatch, svc: SiteUnit,
                    who: Principal) -> dict[str, Any]:
    try:
        alert = svc.book.get(alert_id)
    except UnknownAlertError:
        raise HTTPException(404, f"no alert {alert_id}") from None
    if alert.kind != "lapse":
        raise HTTPException(409, f"alert {alert_id} is a {alert.kind} alert: nobody is "
                                 "needed at a post")
    if alert.state not in (AlertState.OPEN, AlertState.ACKNOWLEDGED):
        raise HTTPException(409, f"alert {alert_id} is {alert.state}: cover is back")
    known = set(svc.shown.registry.names)
    if body.officer not in known and svc.store.get_user(body.officer) is None:
        raise HTTPException(422, f"officer: no officer {body.officer!r} is known "
                                 "(no events and no user of that name)")
    record = await svc.outbox.dispatch(alert, body.officer, who.name, body.note)
    return {"officer": record["officer"], "post": record["post"], "message": record["message"],
            "by": record["by_user"], "at": format_time(record["at_us"]),
            "delivery": "sending"}


@router.get("/api/v1/me/dispatches")
async def my_dispatches(
    svc: Svc, who: Annotated[Principal, Depends(require("officer"))]
) -> dict[str, Any]:
    """Where the officer has been sent, newest first (the last 12 hours)."""
    import asyncio

    rows = await asyncio.to_thread(svc.store.dispatches_for_officer, who.name,
                                   svc.clock() - _DUTY_WINDOW_US)
    out = []
    for r in rows:
        state = None
        if r["alert_id"] in svc.book:
            state = svc.book.get(r["alert_id"]).state.value
        out.append({"post": r["post"], "message": r["message"], "by": r["by_user"],
                    "at": format_time(r["at_us"]), "at_ms": r["at_us"] // 1000,
                    "alert_state": state})
    return {"officer": who.name, "dispatches": out}


def _shelf_subject(svc: SiteUnit, what: str, name: str) -> str:
    if what == "alerts":
        try:
            alert = svc.book.get(name)
        except UnknownAlertError:
            raise HTTPException(404, f"no alert {name}") from None
        if not may_shelve(alert.kind):
            raise HTTPException(409, f"alert {name} is a {alert.kind} alert: it may not be "
                                     "shelved (it must reach a person)")
        return f"alert:{name}"
    try:
        svc.site.post(name)
    except KeyError:
        raise HTTPException(404, f"no post {name}") from None
    return f"post:{name}"


async def _shelve(svc: SiteUnit, what: str, name: str, body: ShelveBody,
                  who: Principal) -> dict[str, Any]:
    from coverwatch.server.shelves import shelve as set_shelf

    subject = _shelf_subject(svc, what, name)
    try:
        shelf = await set_shelf(svc, subject, body.minutes, body.reason, who.name)
    except ShelvingError as exc:
        raise HTTPException(422, str(exc)) from None
    return shelf.to_json()


async def _unshelve(svc: SiteUnit, subject: str, who: Principal) -> dict[str, Any]:
    from coverwatch.server.shelves import unshelve as end_shelf

    if await end_shelf(svc, subject, who.name) is None:
        raise HTTPException(404, f"{subject} is not shelved")
    return {"subject": subject, "unshelved": True}


Acting = Annotated[Principal, Depends(require("supervisor", "admin"))]


@router.post("/api/v1/alerts/{alert_id}/shelve", responses=problems(404, 409, 422))
async def shelve_alert(alert_id: str, body: ShelveBody, svc: Svc, who: Acting) -> dict[str, Any]:
    """Hold an alert's notifications for ``minutes``, with a reason (audited)."""
    return await _shelve(svc, "alerts", alert_id, body, who)


@router.post("/api/v1/posts/{post}/shelve", responses=problems(404, 422))
async def shelve_post(post: str, body: ShelveBody, svc: Svc, who: Acting) -> dict[str, Any]:
    """Hold every alert of a post for ``minutes``, with a reason (audited)."""
    return await _shelve(svc, "posts", post, body, who)


@router.delete("/api/v1/alerts/{alert_id}/shelve", responses=problems(404))
async def unshelve_alert(alert_id: str, svc: Svc, who: Acting) -> dict[str, Any]:
    """End an alert's shelf before its time (audited)."""
    return await _unshelve(svc, f"alert:{alert_id}", who)


@router.delete("/api/v1/posts/{post}/shelve", responses=problems(404))
async def unshelve_post(post: str, svc: Svc, who: Acting) -> dict[str, Any]:
    """End a post's shelf before its time (audited)."""
    return await _unshelve(svc, f"post:{post}", who)


class IncidentAction(BaseModel):
    note: str = Field(default="", max_length=2000)


@router.get("/api/v1/incidents")
async def list_incidents(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))],
) -> dict[str, Any]:
    """Floods grouped as incidents (docs/alerts.md), oldest first, with their members."""
    held = {i.id: i for i in svc.outbox.incidents.incidents()}
    stored = await asyncio.to_thread(svc.store.load_incidents)  # older ones are not held
    every = [*held.values(), *(Incident.from_record(r) for r in stored if r["id"] not in held)]
    return {"incidents": [i.to_json() for i in sorted(every, key=lambda i: (i.started, i.id))]}


@router.post("/api/v1/incidents/{incident_id}/acknowledge",
             responses=problems(400, 404, 409, 422))
async def acknowledge_incident(
    incident_id: str, body: IncidentAction, svc: Svc, request: Request,
    who: Annotated[Principal, Depends(require("supervisor", "admin"))],
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Acknowledge every member that waits for a person (open, or resolved but not
    acknowledged), with one note; each is audited as its own acknowledgement.
    ``Idempotency-Key`` as for an alert."""
    return await once(request, svc, who, body,
                      lambda: _acknowledge_incident(incident_id, body, svc, who))


async def _acknowledge_incident(incident_id: str, body: IncidentAction, svc: SiteUnit,
                                who: Principal) -> dict[str, Any]:
    from coverwatch.domain.alerts import AlertLifecycleError

    incident = svc.outbox.incidents.by_id.get(incident_id)
    if incident is None:  # an older one, not held since the start
        record = await asyncio.to_thread(svc.store.get_incident_record, incident_id)
        incident = None if record is None else Incident.from_record(record)
    if incident is None:
        raise HTTPException(404, f"no incident {incident_id}")
    done, skipped = [], []
    for alert_id in list(incident.members):
        alert = svc.book.get(alert_id) if alert_id in svc.book else None
        if alert is None or not alert.needs_acknowledgement or alert.state is AlertState.CLOSED:
            skipped.append(alert_id)
            continue
        try:
            await acknowledge(svc, alert_id, who.name, body.note or f"incident {incident_id}")
        except AlertLifecycleError:  # someone else took it meanwhile
            skipped.append(alert_id)
            continue
        done.append(alert_id)
    return {"incident": incident_id, "acknowledged": done, "skipped": skipped}
