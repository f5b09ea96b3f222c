"""Tour routes: the rounds running now, per tour and officer.

* ``GET /api/v1/tours``: every round running at the shown cover's horizon (and
  the one before, so a round that just ended stays visible): per stop its due
  time, the scan that counted, late and missed; the next stop and who scanned.
  Supervisors, admins and auditors.
* ``GET /api/v1/me/tours``: the same for an officer's /duty page, with the site's
  checkpoints (id, name, kind) so the page can name what it scanned.
* ``POST /api/v1/me/scans``: the officer (their page, or their device) scanned a
  checkpoint now: stored as a scan event, an exact fix at the checkpoint
  (docs/tours.md). The QR code's text is ``coverwatch-checkpoint:<site>:<id>``;
  the page sends the id (and the site, checked here).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from coverwatch.domain.time import format_time, seconds_to_us
from coverwatch.formats.validation import InvalidEvents, validate_records
from coverwatch.http.access import DEVICE, Principal, require, site_unit
from coverwatch.http.problems import problems
from coverwatch.server.handlers.ingest import ingest
from coverwatch.server.tours import progress_json
from coverwatch.server.unit import SiteUnit

__all__ = ["router"]

router = APIRouter()
Svc = Annotated[SiteUnit, Depends(site_unit)]


def _progress(svc: SiteUnit) -> dict[str, Any]:
    watch = svc.tours
    t = svc.shown.horizon
    if watch is None or not svc.site.tours or t is None or t <= 0:
        return {"rounds": [], "checkpoints": _checkpoints(svc), "tours": _tours(svc)}
    span = max(tour.length_us for tour in svc.site.tours)
    rounds = watch.rounds(t, t - span)
    return {"rounds": progress_json(rounds, watch.watched_from),
            "checkpoints": _checkpoints(svc), "tours": _tours(svc)}


def _tours(svc: SiteUnit) -> list[dict[str, Any]]:
    """The tours' names, for the pages (a round names only its tour's id)."""
    return [{"id": t.id, "name": t.name or t.id} for t in svc.site.tours]


def _checkpoints(svc: SiteUnit) -> list[dict[str, Any]]:
    return [{"id": c.id, "name": c.name, "kind": c.kind, "post": c.post}
            for c in svc.site.checkpoints]


@router.get("/api/v1/tours")
async def tours(
    svc: Svc, who: Annotated[Principal, Depends(require("supervisor", "admin", "auditor"))],
) -> dict[str, Any]:
    return _progress(svc)


@router.get("/api/v1/me/tours")
async def my_tours(
    svc: Svc, who: Annotated[Principal, Depends(require("officer"))],
) -> dict[str, Any]:
    return _progress(svc)


class ScanBody(BaseModel):
    checkpoint: str = Field(min_length=1, max_length=200)
    site: str | None = Field(default=None, max_length=200)  # from the QR code, if it named one


@router.post("/api/v1/me/scans", status_code=201, responses=problems(403, 422))
async def my_scan(
    body: ScanBody, svc: Svc,
    who: Annotated[Principal, Depends(require("officer", DEVICE))],
) -> dict[str, Any]:
    """The officer scanned ``checkpoint`` now: a scan event (an exact fix there)."""
    officer = who.officer if who.kind == "device" else who.name
    if not officer:
        raise HTTPException(403, "this device is not assigned to an officer")
    if body.site is not None and body.site != svc.site.id:
        raise HTTPException(422, f"this code is for site {body.site!r}, not {svc.site.id!r}")
    t = max(svc.clock(), svc.shown.horizon)
    via = "device" if who.kind == "device" else "session"
    rec = {"t": format_time(t), "kind": "scan", "officer": officer,
           "checkpoint": body.checkpoint, "via": via}
    try:
        (row,) = validate_records([rec], svc.site, now_us=svc.clock(),
                                  max_future_us=seconds_to_us(svc.settings.max_future_s))
    except InvalidEvents as e:
        raise HTTPException(422, e.problems[0].message) from None
    row["t_us"] = t  # exact, not through the text form
    await ingest(svc, [row], source=via, device=who.name if via == "device" else None)
    cp = next(c for c in svc.site.checkpoints if c.id == body.checkpoint)
    return {"checkpoint": cp.id, "name": cp.name, "kind": cp.kind, "at": format_time(t),
            "officer": officer, "position": list(cp.at), "accuracy_m": cp.accuracy_m}
