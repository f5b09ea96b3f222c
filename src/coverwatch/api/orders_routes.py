"""HTTP routes for post orders: read them, acknowledge them, see who has.

* ``GET /api/v1/orders`` — every post's current orders and version (any person);
* ``GET /api/v1/me/orders`` — the caller's own posts' orders with what changed
  since they last acknowledged (an officer's page, or a device for its officer);
* ``POST /api/v1/orders/{post}/acknowledge`` ``{version}`` — "I have read and
  understood these orders" (officer session or device); 409 with the current
  version if ``version`` is not current;
* ``GET /api/v1/orders/status`` — per post and per shift, who has and has not
  acknowledged the current version (supervision roles).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from coverwatch.domain.roles import ROLES
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.http.access import DEVICE, SUPERVISION, Principal, require, site_unit
from coverwatch.http.problems import problem_response, problems
from coverwatch.server.briefing import Briefing, StaleVersionError, UnknownPostError
from coverwatch.server.unit import SiteUnit

__all__ = ["router"]

router = APIRouter()

Svc = Annotated[SiteUnit, Depends(site_unit)]


class OrdersAcknowledgement(BaseModel):
    version: str = Field(min_length=1, max_length=64)


def briefing(svc: SiteUnit) -> Briefing:
    b: Briefing | None = svc.briefing
    if b is None:
        raise HTTPException(503, "the briefing service is not running")
    return b


def _officer_of(who: Principal) -> str:
    if who.kind == "device":
        if who.officer is None:
            raise HTTPException(403, f"device {who.name} is not assigned to an officer")
        return who.officer
    return who.name


@router.get("/api/v1/orders", responses=problems(503))
async def all_orders(
    svc: Svc,
    who: Annotated[Principal, Depends(require(*ROLES))],
) -> dict[str, Any]:
    b = briefing(svc)
    return {"site": svc.site.id, "posts": [b.orders_json(p) for p in b.current()]}


@router.get("/api/v1/me/orders", responses=problems(503))
async def my_orders(
    svc: Svc, who: Annotated[Principal, Depends(require("officer", DEVICE))]
) -> dict[str, Any]:
    return briefing(svc).officer_orders(_officer_of(who))


@router.post("/api/v1/orders/{post}/acknowledge", responses=problems(404, 409, 503))
async def acknowledge_orders(
    post: str, body: OrdersAcknowledgement, svc: Svc,
    who: Annotated[Principal, Depends(require("officer", DEVICE))],
) -> Any:
    b = briefing(svc)
    officer = _officer_of(who)
    device = who.name if who.kind == "device" else None
    try:
        ack = await b.acknowledge(
            officer, post, body.version, via="device" if device else "session",
            device=device, user=None if device else who.name)
    except UnknownPostError:
        raise HTTPException(404, f"no post {post}") from None
    except StaleVersionError as e:
        return problem_response(409, str(e), current_version=e.current)
    return {"officer": ack.officer, "post": ack.post, "version": ack.version,
            "at": format_time(ack.at), "via": ack.via, "device": ack.device}


@router.get("/api/v1/orders/status", responses=problems(503))
async def orders_status(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))],
    start: Annotated[str | None, Query(alias="from")] = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Shifts overlapping ``[from, until)``: by default the last 12 and next 24 hours."""
    now = svc.clock()
    try:
        t0 = parse_time(start) if start else now - 12 * 3600 * US_PER_S
        t1 = parse_time(until) if until else now + 24 * 3600 * US_PER_S
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return briefing(svc).status(t0, t1)
