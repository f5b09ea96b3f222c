"""``GET /api/v1/dead-letters``: messages that could not be stored, for admins.

A message set aside (:mod:`coverwatch.storage.deadletters`) is listed with
when it arrived, from where, why it was not stored and the message itself (cut
at a limit), newest first, for the caller's site only.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from coverwatch.domain.time import format_time
from coverwatch.http.access import Principal, require, site_unit
from coverwatch.http.problems import problems
from coverwatch.server.unit import SiteUnit

__all__ = ["router"]

router = APIRouter()
Svc = Annotated[SiteUnit, Depends(site_unit)]


@router.get("/api/v1/dead-letters", responses=problems(401, 403))
async def dead_letters(
    svc: Svc, who: Annotated[Principal, Depends(require("admin"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> dict[str, Any]:
    """The site's newest dead letters (``before``: an id, for the next page)."""
    letters = await asyncio.to_thread(svc.store.dead_letters, limit, before)
    total = await asyncio.to_thread(svc.store.count_dead_letters)
    return {"total": total, "since_start": svc.dead_letters, "dead_letters": [
        {"id": d["id"], "received": format_time(int(d["received_us"])), "source": d["source"],
         "topic": d["topic"], "reason": d["reason"], "payload": d["payload"],
         "payload_bytes": d["payload_bytes"], "sha256": d["digest"],
         "truncated": len(d["payload"].encode()) < d["payload_bytes"]}
        for d in letters]}
