"""HTTP routes of the live server. Thin: parse, check the role, call services.

Every route but ``/healthz``, ``/readyz`` and ``/api/v1/login`` requires an
authenticated caller with one of the roles named in its ``require(...)``.
The probes are public by design (they say only "ok"/"not ready") so that an
orchestrator can use them without a credential.
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from coverwatch.domain.alerts import AlertLifecycleError, UnknownAlertError
from coverwatch.domain.time import US_PER_S, format_time, parse_time, seconds_to_us
from coverwatch.server.access import (
    DEVICE,
    INGEST,
    PEOPLE,
    SESSION_COOKIE,
    Principal,
    require,
    services,
)
from coverwatch.server.ingest import InvalidEvents, validate_records
from coverwatch.server.problems import error, file_error, problem_response, problems
from coverwatch.server.services import Services
from coverwatch.storage import (
    DuplicateNameError,
    InvalidRolesError,
    password_problem,
    record_logout,
    record_user_change,
    verify_audit,
)

__all__ = ["router"]

router = APIRouter()

SUPERVISION = ("supervisor", "admin", "auditor")
INT64_MAX = 2**63 - 1  # what the database's integer ids hold
Svc = Annotated[Services, Depends(services)]


def _problem(status: int, errors: list[dict[str, Any]]) -> JSONResponse:
    return problem_response(status, None, errors)


# -- probes -------------------------------------------------------------------


@router.get("/healthz", include_in_schema=False)
async def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")


@router.get("/readyz", include_in_schema=False)
async def readyz(svc: Svc) -> PlainTextResponse:
    # Can it accept, store and evaluate events? A notifier that reaches nobody does not count.
    if not svc.health.ready:
        return PlainTextResponse("not ready: " + ", ".join(sorted(svc.health.problems)),
                                 status_code=503)
    try:
        await asyncio.to_thread(svc.store.max_event_id)
    except Exception:
        return PlainTextResponse("store unavailable", status_code=503)
    return PlainTextResponse("ready")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(
    svc: Svc, who: Annotated[Principal, Depends(require("admin", "auditor"))]
) -> Response:
    from coverwatch.api.metrics import render

    body, content_type = render(svc)
    return Response(body, media_type=content_type)


# -- sessions ---------------------------------------------------------------------


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


@router.post("/api/v1/login", responses=problems(401, 429))
async def login(body: Login, request: Request, response: Response, svc: Svc) -> dict[str, Any]:
    limiter = request.app.state.login_limiter
    client = request.client.host if request.client else "?"
    wait = limiter.wait_s(body.username, client)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise HTTPException(429, f"too many login attempts; try again in {seconds} s",
                            headers={"Retry-After": str(seconds)})
    user = await asyncio.to_thread(svc.store.verify_password, body.username, body.password)
    await asyncio.to_thread(svc.store.record_login_attempt, body.username, user is not None, client)
    if user is None or not user.active:
        limiter.failed(body.username, client)
        raise HTTPException(401, "wrong username or password")
    limiter.succeeded(body.username, client)
    session = await asyncio.to_thread(
        svc.store.create_session, user.id, now_us=svc.clock(),
        ttl_us=seconds_to_us(svc.settings.session_ttl_s),
    )
    response.set_cookie(
        SESSION_COOKIE, session.token, httponly=True, samesite="strict",
        secure=svc.settings.secure_cookies, max_age=int(svc.settings.session_ttl_s), path="/",
    )
    return {"username": user.username, "roles": sorted(user.roles),
            "csrf_token": session.csrf_token}


@router.post("/api/v1/logout")
async def logout(
    request: Request, response: Response, svc: Svc,
    who: Annotated[Principal, Depends(require(*PEOPLE))],
) -> dict[str, str]:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await asyncio.to_thread(svc.store.delete_session, token)
        await asyncio.to_thread(record_logout, svc.store, who.name)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"status": "logged out"}


@router.get("/api/v1/me")
async def me(
    request: Request, svc: Svc,
    who: Annotated[Principal, Depends(require(*PEOPLE))],
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": who.name, "kind": who.kind, "roles": sorted(who.roles)}
    token = request.cookies.get(SESSION_COOKIE)
    if who.kind == "user" and token:
        session = await asyncio.to_thread(svc.store.session_for, token, now_us=svc.clock())
        if session is not None:
            out["csrf_token"] = session.csrf_token
    return out


@router.get("/api/v1/me/duty")
async def my_duty(
    svc: Svc, who: Annotated[Principal, Depends(require("officer"))]
) -> dict[str, Any]:
    """An officer's own duty: on/off, capabilities, last fix and the rules they count for."""
    for o in svc.live.officers():
        if o.officer == who.name:
            return _officer_json(o, svc)
    return {"officer": who.name, "on_duty": False, "capabilities": [], "last_fix": None,
            "stale": True, "counts_for": []}


# -- ingestion ---------------------------------------------------------------------


async def _ingest(svc: Svc, who: Principal, records: list[Any], source: str) -> dict[str, Any]:
    if len(records) > svc.settings.max_batch_events:
        raise HTTPException(413, f"at most {svc.settings.max_batch_events} events per request")
    reports: list[dict[str, Any]] = []
    device = who.name if who.kind == "device" else None
    # Off the event loop: checking a large batch takes long enough to stall every
    # other request (and the ticker) if done here.
    rows = await asyncio.to_thread(
        validate_records, records, svc.site, now_us=svc.clock(),
        max_future_us=seconds_to_us(svc.settings.max_future_s),
        device_officer=who.officer, device=who.kind == "device",
        reports=reports, sender=device or f"{who.kind}:{who.name}",
    )
    result = await svc.ingest(rows, source=source, device=device, reports=reports)
    return {"accepted": result.accepted, "duplicates": result.duplicates, "late": result.late}


def _decode_events(body: bytes, lines: bool) -> Any:
    if lines:
        return [orjson.loads(line) for line in body.splitlines() if line.strip()]
    data = orjson.loads(body)
    return data.get("events") if isinstance(data, dict) else data


_EVENTS_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    "application/x-ndjson": {"schema": {"type": "string"}},
}}}


@router.post("/api/v1/events", responses=problems(400, 422), openapi_extra=_EVENTS_BODY)
async def post_events(
    request: Request, svc: Svc,
    who: Annotated[Principal, Depends(require(DEVICE, INGEST, "supervisor", "admin"))],
) -> Any:
    """Store a batch of events: a JSON array, an object with "events", or JSON lines."""
    body = await request.body()
    lines = request.headers.get("content-type", "").startswith("application/x-ndjson")
    try:
        records = await asyncio.to_thread(_decode_events, body, lines)
    except orjson.JSONDecodeError as e:
        return _problem(400, [{"index": None, "field": None, "message": f"invalid JSON: {e}"}])
    if not isinstance(records, list):
        return _problem(422, [{"index": None, "field": "events",
                               "message": "expected a JSON array of events"}])
    try:
        return await _ingest(svc, who, records, "http")
    except InvalidEvents as e:
        return _problem(422, [p.as_dict() for p in e.problems])


# -- cover, officers, lapses ---------------------------------------------------------


def _officer_json(o: Any, svc: Services) -> dict[str, Any]:
    from coverwatch.server.devices import officer_devices

    age = None if o.last_fix_us is None else max(0.0, (svc.live.horizon - o.last_fix_us) / US_PER_S)
    out = {
        "officer": o.officer, "on_duty": o.on_duty, "capabilities": list(o.capabilities),
        "last_fix": None if o.last_fix_us is None else format_time(o.last_fix_us),
        "last_fix_age_s": age, "stale": o.stale,
        "counts_for": [{"post": p, "rule": r} for p, r in o.rules],
    }
    return out | officer_devices(o, svc.watch, svc.clock())


@router.get("/api/v1/cover")
async def cover(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))]
) -> dict[str, Any]:
    """Every rule's state at the horizon: covered, grace, lapsed or inactive."""
    return {"horizon": format_time(svc.live.horizon), "rules": svc.live.cover_states()}


@router.get("/api/v1/officers")
async def officers(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))]
) -> dict[str, Any]:
    from coverwatch.server.devices import reporting_only

    views = svc.live.officers()
    views += reporting_only(views, svc.watch)
    return {"horizon": format_time(svc.live.horizon),
            "officers": [_officer_json(o, svc) for o in views]}


@router.get("/api/v1/lapses")
async def lapses(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))]
) -> dict[str, Any]:
    from coverwatch.reports.replay import lapse_record

    return {"horizon": format_time(svc.live.horizon),
            "lapses": [lapse_record(lp) for lp in svc.live.lapses()]}


@router.get("/api/v1/report")
async def report(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))],
    since: str | None = None, until: str | None = None,
) -> Any:
    """Lapses recomputed from the stored events, late ones included (evidence); starts from
    the newest report checkpoint at or before ``since`` (docs/evidence.md)."""
    from coverwatch.reports.history import recompute
    from coverwatch.reports.replay import lapse_record
    from coverwatch.server.siteapply import SiteVersion, load_versions

    try:
        until_us = svc.live.horizon - 1 if until is None else parse_time(until)
        since_us = None if since is None else parse_time(since)
    except ValueError as e:
        return _problem(422, [error(str(e), field="since/until")])
    versions = await asyncio.to_thread(load_versions, svc.store)
    versions = versions or [SiteVersion(0, svc.doc.source)]
    rep = await asyncio.to_thread(recompute, svc.store, versions, until=until_us, since=since_us,
                                  save_until=svc.live.horizon)
    return {
        "since": format_time(rep.since), "until": format_time(rep.until),
        "events": rep.events, "late_events": rep.late_events,
        "lapses": [lapse_record(lp) for lp in rep.lapses],
        "rules": [{"post": st.post, "rule": st.rule, "need": st.need, "lapses": st.lapses,
                   "alerts": st.alerts, "longest_lapse_s": st.longest_lapse_us / US_PER_S,
                   "cover_pct": st.cover_pct} for st in rep.stats],
    }


# -- alerts ------------------------------------------------------------------------


class AlertAction(BaseModel):
    note: str = Field(default="", max_length=2000)


async def _alert_action(svc: Services, alert_id: str, who: Principal, note: str,
                        what: str) -> dict[str, Any]:
    try:
        alert = await (svc.acknowledge if what == "acknowledge" else svc.close_alert)(
            alert_id, who.name, note)
    except UnknownAlertError:
        raise HTTPException(404, f"no alert {alert_id}") from None
    except AlertLifecycleError as e:
        raise HTTPException(409, str(e)) from None
    return alert.to_record()


@router.post("/api/v1/alerts/{alert_id}/acknowledge", responses=problems(404, 409))
async def acknowledge(
    alert_id: str, body: AlertAction, svc: Svc,
    who: Annotated[Principal, Depends(require("supervisor", "admin"))],
) -> dict[str, Any]:
    """Take ownership of an alert, with a note: stops its escalation."""
    return await _alert_action(svc, alert_id, who, body.note, "acknowledge")


@router.post("/api/v1/alerts/{alert_id}/close", responses=problems(404, 409))
async def close_alert(
    alert_id: str, body: AlertAction, svc: Svc,
    who: Annotated[Principal, Depends(require("supervisor", "admin"))],
) -> dict[str, Any]:
    """Put away an alert whose cover has been restored, with a note."""
    return await _alert_action(svc, alert_id, who, body.note, "close")


@router.get("/api/v1/feed")
async def feed(
    request: Request, svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))]
) -> StreamingResponse:
    """Server-sent events: cover changes, alerts and escalations as they happen."""

    async def stream() -> Any:
        async with svc.feed.subscribe() as q:
            yield b": connected\n\n"
            while True:
                try:
                    data = await asyncio.wait_for(q.get(), timeout=15.0)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                yield b"data: " + data + b"\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})


# -- administration ------------------------------------------------------------------


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    password: str = Field(min_length=12, max_length=1000)
    roles: list[str] = Field(min_length=1, max_length=10)
    # Where the notifier reaches them (Apprise / signed-webhook URLs), checked on entry.
    contacts: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("password")
    @classmethod
    def _strong_password(cls, password: str, info: ValidationInfo) -> str:
        problem = password_problem(str(info.data.get("username", "")), password)
        if problem is not None:
            raise ValueError(problem)
        return password


class UserChange(BaseModel):
    roles: list[str] | None = Field(default=None, min_length=1, max_length=10)
    active: bool | None = None
    contacts: list[str] | None = Field(default=None, max_length=10)  # replaces the list
    add_contact: str | None = Field(default=None, max_length=2000)


def _user_json(u: Any, contacts: list[str] | None = None) -> dict[str, Any]:
    from coverwatch.notify.contacts import redact_contacts

    return {"username": u.username, "roles": sorted(u.roles), "active": u.active,
            "contacts": redact_contacts(contacts or [])}  # contacts are secrets: redacted


def _checked_contacts(urls: list[str], field: str) -> list[str]:
    from coverwatch.notify.contacts import InvalidContactError, check_contacts

    try:
        return check_contacts(urls)
    except InvalidContactError as e:
        raise HTTPException(422, [error(str(e), field=field)]) from None


@router.get("/api/v1/users")
async def users(svc: Svc, who: Annotated[Principal, Depends(require("admin"))]) -> Any:
    people = await asyncio.to_thread(svc.store.list_users)
    contacts = await asyncio.to_thread(svc.store.contacts_by_user)
    return {"users": [_user_json(u, contacts.get(u.username)) for u in people]}


@router.post("/api/v1/users", status_code=201, responses=problems(409))
async def create_user(
    body: NewUser, svc: Svc, who: Annotated[Principal, Depends(require("admin"))]
) -> Any:
    from coverwatch.notify.contacts import redact_contacts

    contacts = _checked_contacts(body.contacts, "contacts")
    try:
        user = await asyncio.to_thread(svc.store.create_user, body.username, body.password,
                                       body.roles)
    except InvalidRolesError as e:
        raise HTTPException(422, str(e)) from None
    except DuplicateNameError as e:
        raise HTTPException(409, str(e)) from None
    if contacts:
        contacts = await asyncio.to_thread(svc.store.set_contacts, body.username, contacts)
    await asyncio.to_thread(record_user_change, svc.store, who.name, body.username, "created",
                            {"roles": sorted(body.roles),
                             "contacts": redact_contacts(contacts)})
    if contacts:
        svc.outbox.spawn(svc.outbox.check_targets())
    return _user_json(user, contacts)


@router.patch("/api/v1/users/{username}", responses=problems(404))
async def change_user(
    username: str, body: UserChange, svc: Svc,
    who: Annotated[Principal, Depends(require("admin"))],
) -> Any:
    store = svc.store
    if await asyncio.to_thread(store.get_user, username) is None:
        raise HTTPException(404, f"no user {username}")
    from coverwatch.notify.contacts import redact_contacts

    replace = None if body.contacts is None else _checked_contacts(body.contacts, "contacts")
    added = None if body.add_contact is None else \
        _checked_contacts([body.add_contact], "add_contact")[0]
    try:
        if body.roles is not None:
            await asyncio.to_thread(store.set_roles, username, body.roles)
        if body.active is False:
            await asyncio.to_thread(store.deactivate_user, username)
        if replace is not None:
            await asyncio.to_thread(store.set_contacts, username, replace)
        if added is not None:
            await asyncio.to_thread(store.add_contact, username, added)
    except InvalidRolesError as e:
        raise HTTPException(422, str(e)) from None
    change = body.model_dump(exclude_none=True)
    for key in ("contacts", "add_contact"):  # secrets: the audit keeps them redacted
        if key in change:
            change[key] = redact_contacts(replace or []) if key == "contacts" \
                else redact_contacts([added or ""])[0]
    await asyncio.to_thread(record_user_change, store, who.name, username, "changed", change)
    if replace is not None or added is not None or body.roles is not None \
            or body.active is False:
        svc.outbox.spawn(svc.outbox.check_targets())
    user = await asyncio.to_thread(store.get_user, username)
    contacts = await asyncio.to_thread(store.contacts_of, username)
    return _user_json(user, contacts)


@router.get("/api/v1/devices")
async def devices(svc: Svc, who: Annotated[Principal, Depends(require("admin"))]) -> Any:
    return {"devices": [
        {"name": d.name, "officer": d.officer, "active": d.active}
        for d in await asyncio.to_thread(svc.store.list_devices)
    ]}


@router.get("/api/v1/audit")
async def audit(
    svc: Svc, who: Annotated[Principal, Depends(require("auditor", "admin"))],
    after: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    entries = await asyncio.to_thread(svc.store.audit_entries, after, limit)
    return {"entries": [e.as_dict() for e in entries]}


@router.get("/api/v1/audit/verify")
async def audit_verify(
    svc: Svc, who: Annotated[Principal, Depends(require("auditor", "admin"))]
) -> Any:
    result = await asyncio.to_thread(verify_audit, svc.store)
    return {"ok": result.ok, "entries": result.entries, "first_bad_id": result.first_bad_id,
            "reason": result.reason}


class SiteChange(BaseModel):
    reason: str = Field(default="", max_length=4000)


class NewSite(SiteChange):
    site: str = Field(min_length=1, max_length=2_000_000, description="The site file (YAML)")


async def _apply(svc: Services, who: Principal, text: str | None, reason: str) -> Any:
    from coverwatch.errors import SiteFileError
    from coverwatch.server.siteapply import ApplyRefused, apply_site

    try:
        if text is None:
            result = await svc.reload_site(who.name, who.roles, reason)
        else:
            result = await apply_site(svc, text, actor=who.name, roles=who.roles, reason=reason)
    except SiteFileError as e:
        return _problem(422, [file_error(p) for p in e.problems])
    except ApplyRefused as e:
        return problem_response(e.status, str(e), diff=e.diff)
    return {"changed": result.changed, "class": result.overall, "approval": result.required,
            "effective_at": result.effective_at, "diff": result.diff}


@router.post("/api/v1/site/apply", responses=problems(409))
async def apply_site_route(
    body: NewSite, svc: Svc, who: Annotated[Principal, Depends(require("admin", "approver"))]
) -> Any:
    """Apply a new site file. Weakening cover needs the approving role and a reason."""
    return await _apply(svc, who, body.site, body.reason)


@router.post("/api/v1/site/reload", responses=problems(409))
async def reload_site(
    svc: Svc, who: Annotated[Principal, Depends(require("admin", "approver"))],
    body: SiteChange | None = None,
) -> Any:
    """Re-read the site file from disk and apply it (same rules as /site/apply)."""
    return await _apply(svc, who, None, body.reason if body else "")
