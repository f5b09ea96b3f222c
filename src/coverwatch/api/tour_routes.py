"""Tour routes: the rounds running now, per tour and officer.

* ``GET /api/v1/tours``: every round running at the shown cover's horizon (and
  the one before, so a round that just ended stays visible): per stop its due
  time, the scan that counted, late and missed; the next stop and who scanned.
  Supervisors, admins and auditors.
* ``GET /api/v1/me/tours``: the same for an officer's /duty page, with the site's
  checkpoints (id, name, kind) so the page can name what it scanned.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from coverwatch.server.access import Principal, require, services
from coverwatch.server.services import Services
from coverwatch.server.tours import progress_json

__all__ = ["router"]

router = APIRouter()
Svc = Annotated[Services, Depends(services)]


def _progress(svc: Services) -> dict[str, Any]:
    watch = svc.tours
    t = svc.shown.horizon
    if watch is None or not svc.site.tours or t is None or t <= 0:
        return {"rounds": [], "checkpoints": _checkpoints(svc)}
    span = max(tour.length_us for tour in svc.site.tours)
    rounds = watch.rounds(t, t - span)
    return {"rounds": progress_json(rounds), "checkpoints": _checkpoints(svc)}


def _checkpoints(svc: Services) -> list[dict[str, Any]]:
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
