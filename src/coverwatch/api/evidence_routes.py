"""HTTP routes for evidence: anchoring and checking the audit chain, evidence packs.

* ``POST /api/v1/audit/anchor`` — sign the chain's head and the log's tree head now,
  append them, give the tree head to its witnesses (admin, auditor);
* ``GET /api/v1/audit/anchored`` — the chain, MACs and anchors checked, with the last
  anchor and each witness's state (admin, auditor);
* ``GET /api/v1/audit/public-key`` — the public signing key (PEM) for investigators;
* ``GET /api/v1/evidence?since=&until=&post=`` — an evidence pack (zip) for a window
  (auditor, admin); the export is audited;
* ``GET|PUT /api/v1/retention`` — the retention of raw positions (read: auditor, admin;
  set: admin), ``POST /api/v1/holds`` (auditor, admin) and
  ``POST /api/v1/holds/{id}/release`` (admin): legal holds. All audited;
* ``GET /api/v1/records/daily?date=&shift=&format=pdf|csv`` and
  ``GET /api/v1/records/time-in-area?since=&until=&format=csv|pdf`` — supervision records
  (supervision roles).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from coverwatch.domain.time import format_time, parse_time
from coverwatch.errors import StoreError
from coverwatch.http.access import SUPERVISION, Principal, require, site_unit
from coverwatch.http.headers import attachment, refuse_control_characters
from coverwatch.http.problems import problems
from coverwatch.server.unit import SiteUnit

__all__ = ["router"]

router = APIRouter()
Svc = Annotated[SiteUnit, Depends(site_unit)]
Auditing = Annotated[Principal, Depends(require("auditor", "admin"))]


@router.post("/api/v1/audit/anchor")
async def anchor(svc: Svc, who: Auditing) -> dict[str, Any]:
    from coverwatch.evidence.service import anchor_now
    from coverwatch.evidence.treeheads import UnsealedAudit

    try:
        made = await asyncio.to_thread(anchor_now, svc.store, svc.settings, svc.site.id,
                                       witnesses=svc.witnesses)
    except UnsealedAudit as e:
        raise HTTPException(409, str(e)) from None
    return {"head_id": made["head_id"], "at": made["at"], "key_id": made["key_id"]}


@router.get("/api/v1/audit/anchored")
async def anchored(svc: Svc, who: Auditing) -> dict[str, Any]:
    from coverwatch.evidence.service import verify_now

    return await asyncio.to_thread(verify_now, svc.store, svc.settings, svc.site.id,
                                   svc.witnesses)


@router.get("/api/v1/audit/public-key", response_class=PlainTextResponse)
async def public_key(svc: Svc, who: Auditing) -> PlainTextResponse:
    from coverwatch.evidence.service import signing_key

    key = await asyncio.to_thread(signing_key, svc.store, svc.settings)
    return PlainTextResponse(key.public_pem())


@router.get("/api/v1/evidence")
async def evidence(
    svc: Svc, who: Auditing,
    since: Annotated[str, Query(min_length=1, max_length=64)],
    until: Annotated[str, Query(min_length=1, max_length=64)],
    post: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """An evidence pack for [since, until] (ISO-8601), optionally for one post."""
    from coverwatch.evidence.pack import export_pack
    from coverwatch.evidence.service import signing_key, tree_heads_file
    from coverwatch.storage.versions import SiteVersion, load_versions

    # Before any work: the pack would be built and audited, then the reply fail.
    refuse_control_characters(since=since, until=until, post=post)
    try:
        since_us, until_us = parse_time(since), parse_time(until)
    except ValueError as e:
        raise HTTPException(422, f"since/until: {e}") from None
    if until_us <= since_us:
        raise HTTPException(422, "until must be after since")
    if until_us >= svc.shown.horizon:
        raise HTTPException(422, "until must be before the live horizon (a settled window)")
    if post is not None and post not in {p.id for p in svc.site.posts}:
        raise HTTPException(422, f"post: no post {post!r} at this site")

    def build() -> bytes:
        versions = load_versions(svc.store) or [SiteVersion(0, svc.doc.source)]
        key = signing_key(svc.store, svc.settings)
        data = export_pack(svc.store, versions, key, site=svc.site.id,
                           since=since_us, until=until_us, post=post, actor=who.name,
                           heads=tree_heads_file(svc.store, svc.settings))  # proofs on its heads
        svc.store.audit_change(who.name, "evidence.exported", f"site:{svc.site.id}",
                               {"since": since, "until": until, "post": post})
        return data

    from coverwatch.evidence.packproofs import HeadMoved
    from coverwatch.evidence.treeheads import UnsealedAudit

    try:
        data = await asyncio.to_thread(build)
    except (HeadMoved, UnsealedAudit) as e:  # heads signed meanwhile; a forged audit entry
        raise HTTPException(409, str(e)) from None
    name = f"evidence-{svc.site.id}-{format_time(since_us)[:10]}.zip"
    return Response(data, media_type="application/zip", headers=attachment(name))


# -- retention and legal holds ------------------------------------------------------


class RetentionBody(BaseModel):
    positions_days: float | None = Field(default=None, ge=1, le=36_500)


class HoldBody(BaseModel):
    since: str = Field(min_length=1, max_length=64)
    until: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=5, max_length=2000)


def _retention_json(svc: SiteUnit) -> dict[str, Any]:
    from coverwatch.evidence.retention import get_retention_days

    return {"positions_days": get_retention_days(svc.store),
            "holds": [{**h.as_dict(), "since": format_time(h.since_us),
                       "until": format_time(h.until_us)} for h in svc.store.holds()]}


@router.get("/api/v1/retention")
async def retention(svc: Svc, who: Auditing) -> dict[str, Any]:
    """The retention of raw positions and every legal hold."""
    return await asyncio.to_thread(_retention_json, svc)


@router.put("/api/v1/retention")
async def set_retention(
    body: RetentionBody, svc: Svc, who: Annotated[Principal, Depends(require("admin"))],
) -> dict[str, Any]:
    from coverwatch.evidence.retention import set_retention_days

    await asyncio.to_thread(set_retention_days, svc.store, body.positions_days, who.name,
                            svc.site.id)
    return await asyncio.to_thread(_retention_json, svc)


@router.post("/api/v1/holds")
async def place_hold(body: HoldBody, svc: Svc, who: Auditing) -> dict[str, Any]:
    try:
        since_us, until_us = parse_time(body.since), parse_time(body.until)
    except ValueError as e:
        raise HTTPException(422, f"since/until: {e}") from None
    try:
        hold = await asyncio.to_thread(svc.store.add_hold, since_us, until_us, body.reason,
                                       who.name)
    except StoreError as e:
        raise HTTPException(422, str(e)) from None
    return hold.as_dict()


@router.post("/api/v1/holds/{hold_id}/release", responses=problems(404))
async def release_hold(
    hold_id: Annotated[int, Path(ge=0, le=2**63 - 1)], svc: Svc,
    who: Annotated[Principal, Depends(require("admin"))],
) -> dict[str, Any]:
    try:
        await asyncio.to_thread(svc.store.release_hold, hold_id, who.name)
    except StoreError as e:
        raise HTTPException(404, str(e)) from None
    return {"id": hold_id, "released": True}


# -- supervision records ------------------------------------------------------------

Supervising = Annotated[Principal, Depends(require(*SUPERVISION))]


def _file(data: bytes, fmt: str, name: str) -> Response:
    media = "application/pdf" if fmt == "pdf" else "text/csv; charset=utf-8"
    return Response(data, media_type=media, headers=attachment(f"{name}.{fmt}"))


@router.get("/api/v1/records/daily")
async def daily_records(
    svc: Svc, who: Supervising,
    date: Annotated[str, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")],
    shift: Annotated[str | None, Query(pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")] = None,
    format: Annotated[str, Query(pattern="^(csv|pdf)$")] = "pdf",
) -> Response:
    """The daily activity report for a local day (and shift), as PDF or CSV."""
    from coverwatch.reports.supervision import daily_report
    from coverwatch.reports.supervision_out import records_csv, records_pdf
    from coverwatch.storage.versions import SiteVersion, load_versions

    def build() -> bytes:
        versions = load_versions(svc.store) or [SiteVersion(0, svc.doc.source)]
        rep = daily_report(svc.store, versions, svc.site, date, shift)
        if format == "csv":
            return records_csv(rep.sections)
        title = f"Daily activity report: {rep.site}, {date}" + (f", shift {shift}"
                                                                if shift else "")
        return records_pdf(title, rep, rep.sections, rep.timezone)

    try:
        data = await asyncio.to_thread(build)
    except ValueError as e:
        raise HTTPException(422, f"date/shift: {e}") from None
    return _file(data, format, f"daily-{svc.site.id}-{date}")


@router.get("/api/v1/records/time-in-area")
async def time_in_area_records(
    svc: Svc, who: Supervising,
    since: Annotated[str, Query(min_length=1, max_length=64)],
    until: Annotated[str, Query(min_length=1, max_length=64)],
    format: Annotated[str, Query(pattern="^(csv|pdf)$")] = "csv",
) -> Response:
    """Seconds each officer spent in each post's area over [since, until)."""
    from coverwatch.reports.supervision import time_in_area
    from coverwatch.reports.supervision_out import records_csv, records_pdf

    refuse_control_characters(since=since, until=until)
    try:
        lo, hi = parse_time(since), parse_time(until)
    except ValueError as e:
        raise HTTPException(422, f"since/until: {e}") from None
    if hi <= lo or hi - lo > 366 * 86_400 * 1_000_000:
        raise HTTPException(422, "until must be after since, and at most a year later")

    def build() -> bytes:
        sections = {"time in area": time_in_area(svc.site, svc.store, lo, hi)}
        if format == "csv":
            return records_csv(sections)
        return records_pdf(f"Time in area: {svc.site.id}", None, sections, svc.site.timezone)

    return _file(await asyncio.to_thread(build), format, f"time-in-area-{svc.site.id}")
