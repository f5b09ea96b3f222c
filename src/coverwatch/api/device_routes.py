"""HTTP routes for officers' devices: the OsmAnd protocol (Traccar Client, OsmAnd),
booking on and off duty from the phone, and enrolling, rotating and revoking devices.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, StrictBool

from coverwatch.domain.time import format_time, seconds_to_us
from coverwatch.formats.osmand import osmand_body_readings, osmand_readings
from coverwatch.formats.validation import InvalidEvents
from coverwatch.http.access import (
    DEVICE,
    Principal,
    deployment_site_unit,
    device_site,
    require,
    site_unit,
)
from coverwatch.http.problems import problem_response, problems
from coverwatch.server.credentials import DeviceTokens
from coverwatch.server.devices import device_upload
from coverwatch.server.handlers.ingest import ingest
from coverwatch.server.pools import in_alarm
from coverwatch.server.unit import SiteUnit
from coverwatch.storage import Device, DuplicateNameError, record_device_change
from coverwatch.storage.devices import CredentialsChanged, HeldToken

__all__ = ["osmand_upload", "query_params", "router"]

router = APIRouter()
Svc = Annotated[SiteUnit, Depends(site_unit)]
AnySvc = Annotated[SiteUnit, Depends(deployment_site_unit)]  # devices are found deployment-wide


def _problem(status: int, errors: list[dict[str, Any]]) -> Any:
    return problem_response(status, None, errors)


class DutyChange(BaseModel):
    on: StrictBool  # true or false, not 0/1 or "yes": a phone's duty is not guessed
    capabilities: list[str] | None = Field(default=None, max_length=50)


@router.post("/api/v1/me/duty")
async def book_duty(
    body: DutyChange, svc: Svc, who: Annotated[Principal, Depends(require("officer", DEVICE))]
) -> dict[str, Any]:
    """Book on or off duty now, from the officer's page or their device.

    Capabilities default to the officer's valid qualifications; either way a
    governed capability counts only while a qualification for it is valid.
    """
    from coverwatch.domain.briefing import valid_qualifications

    officer = who.officer if who.kind == "device" else who.name
    if not officer:
        raise HTTPException(403, "this device is not assigned to an officer")
    t = max(svc.clock(), svc.shown.horizon)
    caps = body.capabilities
    if caps is None:
        quals = svc.briefing.qualifications if svc.briefing is not None else []
        caps = sorted(valid_qualifications(officer, t, quals)) if body.on else []
    if any(not isinstance(c, str) or not c or len(c) > 64 for c in caps):
        raise HTTPException(422, "capabilities must be names (1-64 characters)")
    via = "device" if who.kind == "device" else "session"
    row = {"kind": "duty", "t_us": t, "officer": officer, "x": None, "y": None,
           "accuracy": None, "post": None, "flag": None, "on": body.on, "open": None,
           "capabilities": sorted(set(caps)),
           "raw": {"t": format_time(t), "kind": "duty", "officer": officer, "on": body.on,
                   "capabilities": sorted(set(caps)), "via": via, "by": who.name}}
    await ingest(svc, [row], source=via, device=who.name if via == "device" else None)
    return {"officer": officer, "on_duty": body.on, "capabilities": row["capabilities"],
            "at": format_time(t), "source": via}


async def _osmand_device(svc: SiteUnit, ident: str | None, alarm: bool,
                         tokens: DeviceTokens | None) -> tuple[Principal, HeldToken | None]:
    """The device, and its token if it came from ``tokens`` (then checked in the commit)."""
    # Traccar Client sends only a device identifier: configure it as the device's token.
    if not ident:  # the id is the device's only credential: without it, unauthenticated
        raise HTTPException(401, "missing id (the device identifier, its coverwatch token)")
    held = None if tokens is None else tokens.held(tokens.hash(ident))
    if held is not None:
        device: Device | None = held.device
    else:
        # An upload with an alarm is looked up in the pool kept for alarms (never queued
        # behind ordinary uploads).
        device = await (in_alarm if alarm else asyncio.to_thread)(
            svc.store.device_for_token, ident)
        if tokens is not None and device is not None:
            tokens.remember(tokens.hash(ident), device)
    if device is None or not device.active:
        raise HTTPException(
            401, "unknown device: set the device identifier to its coverwatch token"
        )
    if device.officer is None:
        raise HTTPException(403, f"device {device.name} is not assigned to an officer")
    return Principal("device", device.name, frozenset({DEVICE}), device.officer,
                     site=device.site), held


class _Recheck(Exception):
    """A device found in the token cache was refused or its token is stale: look it up."""


def query_params(request: Request) -> dict[str, str]:
    """``dict(request.query_params)`` (the last value of a repeated name wins), split
    directly when nothing in it is escaped: a phone's query never is, and Starlette's
    parse was a twentieth of an upload's cost (issue 25)."""
    query: bytes = request.scope.get("query_string", b"")
    if b"%" in query or b"+" in query:
        return dict(request.query_params)
    return dict(p.partition("=")[::2] for p in query.decode("latin-1").split("&") if p)


async def osmand_upload(request: Request, anywhere: SiteUnit,
                        tokens: DeviceTokens | None = None) -> Any:
    """One OsmAnd upload: the reply body (a dict) or a problem response. With ``tokens``
    a device seen before is found without a query; its token is checked in the commit,
    and any refusal is decided again by a fresh lookup (so the cache never changes an
    answer)."""
    params: dict[str, Any] = query_params(request)
    body: Any = None
    body_bytes: bytes | None = None
    ctype = request.headers.get("content-type", "")
    if request.method == "POST":
        if ctype.startswith("application/json"):
            try:
                body = orjson.loads(body_bytes := await request.body())
            except orjson.JSONDecodeError as e:
                return _problem(400, [{"index": None, "field": None,
                                       "message": f"invalid JSON: {e}"}])
        elif ctype.startswith("application/x-www-form-urlencoded"):
            form = await request.form()
            params.update({k: str(v) for k, v in form.items()})
    ident = params.get("id") or params.get("deviceid")
    # The client SDK's uploadJson posts an array of flat readings, each with its id.
    first = body[0] if isinstance(body, list) and body else body
    if isinstance(first, dict):
        ident = ident or first.get("device_id") or first.get("id") or first.get("deviceid")
    alarm = bool(params.get("alarm")) or b'"alarm"' in (body_bytes or b"")
    ident = ident if isinstance(ident, str) else None
    if tokens is not None:
        try:
            return await _osmand_once(request, anywhere, params, body, ident, alarm, tokens)
        except _Recheck:
            tokens.forget(tokens.hash(ident or ""))
    return await _osmand_once(request, anywhere, params, body, ident, alarm, None)


async def _osmand_once(request: Request, anywhere: SiteUnit, params: dict[str, Any],
                       body: Any, ident: str | None, alarm: bool,
                       tokens: DeviceTokens | None) -> Any:
    who, held = await _osmand_device(anywhere, ident, alarm, tokens)
    assert who.officer is not None
    try:
        svc = device_site(request, who)
        readings = osmand_body_readings(body) if body is not None else osmand_readings(params)
    except HTTPException:
        if held is not None:
            raise _Recheck() from None
        raise
    except InvalidEvents as e:
        if held is not None:
            raise _Recheck() from None
        return _problem(400, [p.as_dict() for p in e.problems])
    if held is not None and not readings:  # nothing to commit, so no check there
        raise _Recheck()
    upload = device_upload(readings, svc.site, officer=who.officer, device=who.name,
                           received_us=svc.clock(),
                           max_future_us=seconds_to_us(svc.settings.max_future_s))
    try:
        result = await ingest(svc, upload.rows, source="osmand", device=who.name,
                              reports=upload.reports, held=held)
    except CredentialsChanged:
        if held is None:  # looked up just now: cannot be stale here
            raise
        raise _Recheck() from None
    return {"accepted": result.accepted, "duplicates": result.duplicates, "late": result.late,
            "readings": upload.reply}


@router.get("/osmand", operation_id="osmand_get", responses=problems(400, 401, 403, 409, 413))
@router.post("/osmand", operation_id="osmand_post",
             responses=problems(400, 401, 403, 409, 413))  # one id per method keeps OpenAPI valid
async def osmand(request: Request, anywhere: AnySvc) -> Any:
    """OsmAnd protocol, as spoken by Traccar Client and OsmAnd (query, form or JSON body).

    Never stalls a phone: an authenticated, well-formed upload always gets 200,
    and what could not be used as a fix is stored as a device report with the
    reason, which the reply gives per reading. 4xx only for a missing or unknown
    device identifier (401/403) and a body that is not what it claims (400).

    ``coverwatch serve`` answers these requests on a lean path in front of the
    routes (:mod:`coverwatch.api.osmand_path`) with this same code.
    """
    return await osmand_upload(request, anywhere)


class NewDevice(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    officer: str = Field(min_length=1, max_length=100)


def _enrolment(svc: SiteUnit, name: str, officer: str | None, token: str) -> dict[str, Any]:
    """The link and QR code for the phone, if the server knows its public URL."""
    from coverwatch.server.enrolment import enrolment

    if not svc.settings.public_url:
        return {"token": token, "enrolment": None,
                "note": "start the server with --public-url to get an enrolment link and QR"}
    e = enrolment(svc.settings.public_url, name, officer, token)
    return {"token": token, "enrolment": e.as_dict()}


@router.post("/api/v1/devices", status_code=201, responses=problems(409))
async def create_device(
    body: NewDevice, svc: Svc, who: Annotated[Principal, Depends(require("admin"))]
) -> Any:
    try:
        _, token = await asyncio.to_thread(svc.store.create_device, body.name, body.officer)
    except DuplicateNameError as e:
        raise HTTPException(409, str(e)) from None
    await asyncio.to_thread(record_device_change, svc.store, who.name, body.name, "created",
                            {"officer": body.officer})
    # The token is shown once; the server keeps only its hash.
    return {"name": body.name, "officer": body.officer} | _enrolment(
        svc, body.name, body.officer, token)


async def _own_device(svc: SiteUnit, name: str) -> Device | None:
    """The device of that name, refused (404) if it is another site's: names are unique
    deployment-wide, and another site's device is not this site's to change."""
    device = next((d for d in await asyncio.to_thread(svc.store.list_devices)
                   if d.name == name), None)
    if device is not None and device.site != svc.store.site:
        raise HTTPException(404, f"no device {name} at this site")
    return device


@router.delete("/api/v1/devices/{name}", responses=problems(404))
async def revoke_device(
    name: str, svc: Svc, who: Annotated[Principal, Depends(require("admin"))]
) -> Any:
    await _own_device(svc, name)
    try:
        device = await asyncio.to_thread(svc.store.deactivate_device, name)
    except LookupError:
        raise HTTPException(404, f"no device {name}") from None
    if device.changed:  # revoking a revoked device again is no new event
        await asyncio.to_thread(record_device_change, svc.store, who.name, name, "revoked")
    return {"name": name, "active": False}


@router.post("/api/v1/devices/{name}/rotate", responses=problems(404))
async def rotate_device(
    name: str, svc: Svc, who: Annotated[Principal, Depends(require("admin"))]
) -> Any:
    """A new token for a device (the old one stops working), with its enrolment link."""
    device = await _own_device(svc, name)
    try:
        token = await asyncio.to_thread(svc.store.rotate_device_token, name)
    except LookupError:
        raise HTTPException(404, f"no device {name}") from None
    await asyncio.to_thread(record_device_change, svc.store, who.name, name, "rotated")
    officer = None if device is None else device.officer
    return {"name": name, "officer": officer} | _enrolment(svc, name, officer, token)
