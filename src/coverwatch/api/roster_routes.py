"""HTTP routes for rosters and qualifications.

* ``POST /api/v1/roster`` (``text/csv``: ``officer,post,start,end[,patrol]``) —
  import shifts, all or nothing (supervisor, admin);
* ``GET /api/v1/roster/shifts`` (supervision roles), ``POST`` one shift,
  ``DELETE /api/v1/roster/shifts/{shift_id}`` (supervisor, admin);
* ``GET|POST /api/v1/officers/{officer}/qualifications`` (admin) and
  ``POST /api/v1/qualifications`` (``text/csv``:
  ``officer,qualification,valid_until[,valid_from]``, admin).

A shift whose officer lacks a qualification its post's rules need, for the
whole shift, is refused with 422 and the reason.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from coverwatch.api.orders_routes import briefing
from coverwatch.domain.briefing import Qualification, Shift
from coverwatch.domain.time import format_time, parse_time
from coverwatch.formats.roster import (
    BriefingInputError,
    make_qualification,
    parse_qualifications_csv,
    parse_roster_csv,
)
from coverwatch.http.access import SUPERVISION, Principal, require, site_unit
from coverwatch.http.problems import error, problem_response, problems
from coverwatch.server.unit import SiteUnit
from coverwatch.storage import NotFoundError

__all__ = ["router"]

router = APIRouter()

ROSTERING = ("supervisor", "admin")
Svc = Annotated[SiteUnit, Depends(site_unit)]
MAX_CSV_BYTES = 5_000_000
_CSV_BODY = {"requestBody": {"required": True,
                             "content": {"text/csv": {"schema": {"type": "string"}}}}}


def _shift_json(s: Shift) -> dict[str, Any]:
    return {"id": s.id, "officer": s.officer, "post": s.post, "patrol": s.patrol,
            "start": format_time(s.start), "end": format_time(s.end)}


def _qualification_json(q: Qualification) -> dict[str, Any]:
    return {"officer": q.officer, "qualification": q.name,
            "valid_from": None if q.valid_from is None else format_time(q.valid_from),
            "valid_until": format_time(q.valid_until)}


async def _csv(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        raise HTTPException(413, f"at most {MAX_CSV_BYTES} bytes of CSV")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the CSV must be UTF-8") from None


def _refused(e: BriefingInputError) -> JSONResponse:
    return problem_response(422, None, [error(p) for p in e.problems])


class NewShift(BaseModel):
    officer: str = Field(min_length=1, max_length=100)
    post: str | None = Field(default=None, min_length=1, max_length=100)
    patrol: str | None = Field(default=None, min_length=1, max_length=100)
    start: str
    end: str


class NewQualification(BaseModel):
    qualification: str = Field(min_length=1, max_length=100)
    valid_until: str
    valid_from: str | None = None


@router.post("/api/v1/roster", responses=problems(400, 422, 503), openapi_extra=_CSV_BODY)
async def import_roster(
    request: Request, svc: Svc, who: Annotated[Principal, Depends(require(*ROSTERING))]
) -> Any:
    b = briefing(svc)
    try:
        # Off the event loop: 5 MB of rows takes a moment to check.
        shifts = await asyncio.to_thread(parse_roster_csv, await _csv(request),
                                         svc.site.timezone)
        stored = await b.add_shifts(shifts, who.name)
    except BriefingInputError as e:
        return _refused(e)
    return {"imported": len(stored), "shifts": [_shift_json(s) for s in stored]}


@router.get("/api/v1/roster/shifts", responses=problems(503))
async def list_shifts(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))],
    start: Annotated[str | None, Query(alias="from")] = None,
    until: str | None = None,
    officer: str | None = None,
) -> Any:
    try:
        t0 = parse_time(start) if start else None
        t1 = parse_time(until) if until else None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    shifts = [s for s in briefing(svc).shifts
              if (t0 is None or s.end > t0) and (t1 is None or s.start < t1)
              and (officer is None or s.officer == officer)]
    return {"shifts": [_shift_json(s) for s in shifts]}


@router.post("/api/v1/roster/shifts", status_code=201, responses=problems(503))
async def add_shift(
    body: NewShift, svc: Svc, who: Annotated[Principal, Depends(require(*ROSTERING))]
) -> Any:
    try:
        shift = Shift(0, body.officer, parse_time(body.start), parse_time(body.end),
                      body.post, body.patrol)
    except ValueError as e:
        return problem_response(422, str(e))
    try:
        (stored,) = await briefing(svc).add_shifts([shift], who.name)
    except BriefingInputError as e:
        return _refused(e)
    return _shift_json(stored)


@router.delete("/api/v1/roster/shifts/{shift_id}", responses=problems(404, 503))
async def delete_shift(
    shift_id: Annotated[int, Path(ge=0, le=2**63 - 1)], svc: Svc,
    who: Annotated[Principal, Depends(require(*ROSTERING))],
) -> Any:
    try:
        shift = await briefing(svc).delete_shift(shift_id, who.name)
    except NotFoundError:
        raise HTTPException(404, f"no shift {shift_id}") from None
    return {"deleted": _shift_json(shift)}


@router.get("/api/v1/officers/{officer}/qualifications", responses=problems(503))
async def officer_qualifications(
    officer: str, svc: Svc, who: Annotated[Principal, Depends(require("admin"))]
) -> Any:
    records = [q for q in briefing(svc).qualifications if q.officer == officer]
    return {"officer": officer, "qualifications": [_qualification_json(q) for q in records]}


@router.post("/api/v1/officers/{officer}/qualifications", responses=problems(503))
async def set_qualification(
    officer: str, body: NewQualification, svc: Svc,
    who: Annotated[Principal, Depends(require("admin"))],
) -> Any:
    try:
        q = make_qualification(officer, body.qualification, body.valid_until, body.valid_from,
                               svc.site.timezone)
    except ValueError as e:
        return problem_response(422, str(e))
    await briefing(svc).set_qualifications([q], who.name)
    return _qualification_json(q)


@router.post("/api/v1/qualifications", responses=problems(400, 422, 503),
             openapi_extra=_CSV_BODY)
async def import_qualifications(
    request: Request, svc: Svc, who: Annotated[Principal, Depends(require("admin"))]
) -> Any:
    try:
        records = await asyncio.to_thread(parse_qualifications_csv, await _csv(request),
                                          svc.site.timezone)
    except BriefingInputError as e:
        return _refused(e)
    await briefing(svc).set_qualifications(records, who.name)
    return {"imported": len(records)}
