"""Routes for other tools' formats: OwnTracks' HTTP mode, and exports for QGIS, GPX and CSV.

``POST /owntracks`` authenticates with HTTP Basic (any username, the device
token as password), because that is what the OwnTracks app can send. It never
stalls a phone: an authenticated, well-formed message gets ``200 []`` even
when its position cannot be used (stored as a device report with the reason),
and so does an empty body (the booklet allows zero-length payloads), since
OwnTracks retries a refused message before sending anything newer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from coverwatch.domain.time import parse_time
from coverwatch.formats.accuracy import default_accuracy_m
from coverwatch.formats.owntracks import OwnTracksError, owntracks_records
from coverwatch.http.access import (
    DEVICE,
    Principal,
    deployment_site_unit,
    device_site,
    require,
    site_unit,
)
from coverwatch.http.problems import error, problem_response, problems
from coverwatch.server.owntracks import store_owntracks
from coverwatch.server.unit import SiteUnit

__all__ = ["router"]

log = logging.getLogger("coverwatch.server.owntracks")
router = APIRouter()
Svc = Annotated[SiteUnit, Depends(site_unit)]
AnySvc = Annotated[SiteUnit, Depends(deployment_site_unit)]  # devices are found deployment-wide
_BASIC = {"WWW-Authenticate": 'Basic realm="coverwatch", charset="UTF-8"'}


def _basic_password(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise HTTPException(401, "HTTP Basic authentication required (password: the device "
                                 "token)", headers=_BASIC)
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise HTTPException(401, "Authorization must be HTTP Basic (password: the device token)",
                            headers=_BASIC)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise HTTPException(401, "malformed HTTP Basic credentials", headers=_BASIC) from None
    _, sep, password = decoded.partition(":")
    if not sep or not password:
        raise HTTPException(401, "HTTP Basic credentials need a password (the device token)",
                            headers=_BASIC)
    return password


async def _owntracks_device(request: Request, svc: SiteUnit) -> Principal:
    device = await asyncio.to_thread(svc.store.device_for_token, _basic_password(request))
    if device is None or not device.active:
        raise HTTPException(401, "unknown or revoked device token", headers=_BASIC)
    if device.officer is None:
        raise HTTPException(403, f"device {device.name} is not assigned to an officer")
    return Principal("device", device.name, frozenset({DEVICE}), device.officer,
                     site=device.site)


@router.post("/owntracks", responses=problems(400, 401, 403, 409, 413))
async def owntracks(request: Request, anywhere: AnySvc) -> Any:
    """OwnTracks HTTP mode: ``_type: location`` becomes a fix; the answer is a JSON array."""
    who = await _owntracks_device(request, anywhere)
    assert who.officer is not None
    svc = device_site(request, who)
    body = await request.body()
    if not body.strip():  # zero-length is a valid OwnTracks payload: nothing to store
        return JSONResponse([])
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return problem_response(400, None, [error(f"invalid JSON: {e}")])
    try:
        message = owntracks_records(payload, who.officer,
                                    default_accuracy_m=default_accuracy_m(svc.site))
    except OwnTracksError as e:
        return problem_response(400, None, [error(str(e), field="_type")])
    if len(message.records) > svc.settings.max_batch_events:
        raise HTTPException(413, f"at most {svc.settings.max_batch_events} events per request")
    if message.ignored:
        level = logging.WARNING if message.unreadable else logging.DEBUG
        log.log(level, "OwnTracks from device %s: %s", who.name, "; ".join(message.ignored))
    # One device report per location, a fix where usable: a bad one never drops a good one.
    await store_owntracks(svc, message, officer=who.officer, device=who.name)
    return JSONResponse([])  # OwnTracks expects an array (of messages for the phone)


_MEDIA = {"geojson": "application/geo+json", "gpx": "application/gpx+xml",
          "csv": "text/csv; charset=utf-8"}


@router.get("/api/v1/export", responses={
    200: {"content": {m.split(";")[0]: {"schema": {"type": "string"}} for m in _MEDIA.values()}},
    **problems(422)})
async def export(
    svc: Svc, who: Annotated[Principal, Depends(require("supervisor", "admin", "auditor"))],
    since: str, until: str, format: str = "geojson",
) -> Response:
    """Officers' tracks, lapses and alerts for [since, until) as GeoJSON, GPX or CSV (UTC)."""
    from coverwatch.reports.exports import ExportError, export_history

    if format not in _MEDIA:
        return problem_response(422, None, [error(
            f"unknown format {format!r}; use geojson, gpx or csv", field="format")])
    try:
        since_us, until_us = parse_time(since), parse_time(until)
    except ValueError as e:
        return problem_response(422, None, [error(str(e), field="since/until")])
    try:
        body = await asyncio.to_thread(export_history, svc.store, svc.doc.source, since_us,
                                       until_us, format)
    except ExportError as e:
        return problem_response(422, None, [error(str(e), field=e.field)])
    name = f"coverwatch-{svc.site.id}.{format}"
    return Response(body, media_type=_MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
