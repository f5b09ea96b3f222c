"""HTTP routes of the live server. Thin: parse, check the role, call the handlers.

Every route but ``/healthz``, ``/readyz`` and ``/api/v1/login`` requires an
authenticated caller with one of the roles named in its ``require(...)``.
The probes are public by design (they say only "ok"/"not ready") so that an
orchestrator can use them without a credential.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from coverwatch.api.idempotency import IdempotencyKey, once
from coverwatch.domain.alerts import AlertLifecycleError, UnknownAlertError
from coverwatch.domain.fixbatch import FixBatch
from coverwatch.domain.time import US_PER_S, format_time, parse_time, seconds_to_us
from coverwatch.formats.validation import InvalidEvents, plain_fix_batch, validate_records
from coverwatch.http.access import (
    DEVICE,
    INGEST,
    SUPERVISION,
    Principal,
    all_sites,
    deployment_site_unit,
    require,
    site_unit,
)
from coverwatch.http.problems import error, file_error, problem_response, problems
from coverwatch.server import handlers
from coverwatch.server.unit import SiteUnit
from coverwatch.storage import (
    verify_audit,
)

__all__ = ["router"]

router = APIRouter()

INT64_MAX = 2**63 - 1  # what the database's integer ids hold
# A body or batch this small is decoded and checked on the event loop (tens of µs):
# a phone's one fix should not pay two hops to a thread (issue 25).
INLINE_BODY_BYTES = 4096
INLINE_EVENTS = 8
Svc = Annotated[SiteUnit, Depends(site_unit)]
# Deployment-wide routes (sessions, users, probes): users and tokens are not per site.
AnySvc = Annotated[SiteUnit, Depends(deployment_site_unit)]


def _problem(status: int, errors: list[dict[str, Any]]) -> JSONResponse:
    return problem_response(status, None, errors)


# -- probes -------------------------------------------------------------------


@router.get("/healthz", include_in_schema=False)
async def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request, svc: AnySvc) -> PlainTextResponse:
    # Can it accept, store and evaluate events? A notifier that reaches nobody does not count.
    sites = all_sites(request)
    problems_found = sorted(
        p if len(sites) == 1 else f"{name}: {p}"
        for name, s in sites.items() for p in s.health.problems if not s.health.ready)
    if problems_found:
        return PlainTextResponse("not ready: " + ", ".join(problems_found), status_code=503)
    try:
        await asyncio.to_thread(svc.store.max_event_id)
    except Exception:
        return PlainTextResponse("store unavailable", status_code=503)
    return PlainTextResponse("ready")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(
    request: Request, who: Annotated[Principal, Depends(require("admin", "auditor"))]
) -> Response:
    from coverwatch.api.metrics import render

    sites = list(all_sites(request).values())
    for svc in sites:
        if svc.bus is not None:  # distributed: each site's owner and its latest state
            await svc.bus.refresh_replica()
    body, content_type = render(sites)
    return Response(body, media_type=content_type)


@router.get("/api/v1/me/duty")
async def my_duty(
    svc: Svc, who: Annotated[Principal, Depends(require("officer"))]
) -> dict[str, Any]:
    """An officer's own duty: on/off, capabilities, last fix and the rules they count for."""
    for o in svc.shown.officers():
        if o.officer == who.name:
            return _officer_json(o, svc)
    return {"officer": who.name, "on_duty": False, "capabilities": [], "last_fix": None,
            "stale": True, "counts_for": []}


# -- ingestion ---------------------------------------------------------------------


async def _ingest(svc: Svc, who: Principal, records: list[Any], source: str, *,
                  small: bool = False) -> dict[str, Any]:
    if len(records) > svc.settings.max_batch_events:
        raise HTTPException(413, f"at most {svc.settings.max_batch_events} events per request")
    reports: list[dict[str, Any]] = []
    device = who.name if who.kind == "device" else None
    # Off the event loop: checking a large batch takes long enough to stall every
    # other request (and the ticker) if done here; a phone's few fixes (a small body)
    # cost less here than the hop to a thread.
    check = functools.partial(
        validate_records, records, svc.site, now_us=svc.clock(),
        max_future_us=seconds_to_us(svc.settings.max_future_s),
        device_officer=who.officer, device=who.kind == "device",
        reports=reports, sender=device or f"{who.kind}:{who.name}",
    )
    inline = small and len(records) <= INLINE_EVENTS
    rows: list[dict[str, Any]] | FixBatch
    if inline:
        rows = check()
    elif who.kind != "device":
        rows = await asyncio.to_thread(
            _fixes_or_rows, records, check, now_us=svc.clock(),
            max_future_us=seconds_to_us(svc.settings.max_future_s))
    else:
        rows = await asyncio.to_thread(check)
    result = await handlers.ingest(svc, rows, source=source, device=device, reports=reports)
    await _audit_back_dated(svc, who, rows, source)
    return {"accepted": result.accepted, "duplicates": result.duplicates, "late": result.late}


def _fixes_or_rows(records: list[Any], check: Any, *, now_us: int, max_future_us: int
                   ) -> FixBatch | list[dict[str, Any]]:
    """A batch of nothing but plain fixes as keyed columns (issue 25), else ``check()``'s
    rows (which names any problem)."""
    from coverwatch.storage.eventrows import key_fixes

    batch = plain_fix_batch(records, now_us=now_us, max_future_us=max_future_us)
    if batch is None:
        return check()  # type: ignore[no-any-return]
    key_fixes(batch)
    return batch


BACK_DATED_S = 300.0  # as evidence.pdf.BACK_DATED_S: written after the fact


async def _audit_back_dated(svc: Svc, who: Principal,
                            rows: list[dict[str, Any]] | FixBatch, source: str) -> None:
    """Audit events posted with a time far before their arrival (a device's buffered fixes
    excepted): history written after the fact changes what the events imply, so who did it,
    when and what stays on the record (issue 23)."""
    now = svc.clock()
    before = now - seconds_to_us(BACK_DATED_S)
    if isinstance(rows, FixBatch):
        if not rows or min(rows.t_us) >= before:
            return
        rows = rows.rows()
    device = who.kind == "device"
    back = [r for r in rows if int(r["t_us"]) < before and not (device and r["kind"] == "fix")]
    if not back:
        return
    details = {"source": source, "count": len(back), "received_us": now,
               "events": [{k: r.get(k) for k in ("kind", "t_us", "officer", "post", "flag",
                                                 "on", "open") if r.get(k) is not None}
                          for r in back[:50]]}
    await asyncio.to_thread(svc.store.audit_change, f"{who.kind}:{who.name}", "events.back-dated",
                            f"site:{svc.site.id}", details)


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
        records = _decode_events(body, lines) if len(body) <= INLINE_BODY_BYTES \
            else await asyncio.to_thread(_decode_events, body, lines)
    except orjson.JSONDecodeError as e:
        return _problem(400, [{"index": None, "field": None, "message": f"invalid JSON: {e}"}])
    if not isinstance(records, list):
        return _problem(422, [{"index": None, "field": "events",
                               "message": "expected a JSON array of events"}])
    try:
        return await _ingest(svc, who, records, "http", small=len(body) <= INLINE_BODY_BYTES)
    except InvalidEvents as e:
        return _problem(422, [p.as_dict() for p in e.problems])


# -- cover, officers, lapses ---------------------------------------------------------


def _officer_json(o: Any, svc: SiteUnit) -> dict[str, Any]:
    from coverwatch.server.devices import officer_devices

    names = {p.id: p.name or p.id for p in svc.site.posts}
    age = None if o.last_fix_us is None else \
        max(0.0, (svc.shown.horizon - o.last_fix_us) / US_PER_S)
    out = {
        "officer": o.officer, "on_duty": o.on_duty, "capabilities": list(o.capabilities),
        "last_fix": None if o.last_fix_us is None else format_time(o.last_fix_us),
        "last_fix_age_s": age, "stale": o.stale,
        "counts_for": [{"post": p, "post_name": names.get(p, p), "rule": r} for p, r in o.rules],
    }
    return out | officer_devices(o, svc.watch, svc.clock())


@router.get("/api/v1/cover")
async def cover(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))]
) -> dict[str, Any]:
    """Every rule's state at the horizon: covered, grace, lapsed or inactive; and the
    events that arrived behind the horizon lately, per device (``late``)."""
    return {"horizon": format_time(svc.shown.horizon), "rules": svc.shown.cover_states(),
            "late": svc.shown.late.summary(svc.clock())}


@router.get("/api/v1/officers")
async def officers(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))]
) -> dict[str, Any]:
    from coverwatch.server.devices import reporting_only

    views = svc.shown.officers()
    views += reporting_only(views, svc.watch)
    return {"horizon": format_time(svc.shown.horizon),
            "officers": [_officer_json(o, svc) for o in views]}


@router.get("/api/v1/lapses")
async def lapses(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))]
) -> dict[str, Any]:
    from coverwatch.reports.replay import lapse_record

    return {"horizon": format_time(svc.shown.horizon),
            "lapses": [lapse_record(lp) for lp in svc.shown.lapses()]}


@router.get("/api/v1/report")
async def report(
    svc: Svc, who: Annotated[Principal, Depends(require(*SUPERVISION))],
    since: str | None = None, until: str | None = None,
) -> Any:
    """Lapses recomputed from the stored events, late ones included (evidence); starts from
    the newest report checkpoint at or before ``since`` (docs/evidence.md)."""
    from coverwatch.reports.history import recompute
    from coverwatch.storage.versions import SiteVersion, load_versions

    try:
        until_us = svc.shown.horizon - 1 if until is None else parse_time(until)
        since_us = None if since is None else parse_time(since)
    except ValueError as e:
        return _problem(422, [error(str(e), field="since/until")])
    versions = await asyncio.to_thread(load_versions, svc.store)
    versions = versions or [SiteVersion(0, svc.doc.source)]
    rep = await asyncio.to_thread(recompute, svc.store, versions, until=until_us, since=since_us,
                                  save_until=svc.shown.horizon)
    from coverwatch.evidence.window import cover_with_data
    from coverwatch.formats.sitefile import load_site_text_document
    from coverwatch.reports.purged import purged_lapses

    # Where retention purged the positions there is no data: marked, no lapse derived there,
    # and left out of the share covered (as in evidence packs).
    sites = [load_site_text_document(v.source, "<site>").site for v in versions]
    first = sites[max((i for i, v in enumerate(versions) if v.effective_us <= rep.since),
                      default=0)]  # the rules in force at the report's start, as a pack
    graces = {(p.id, r.id): seconds_to_us(r.grace_s) for s in sites for p, r in s.rules()}
    spans, lapses = await asyncio.to_thread(
        purged_lapses, svc.store, rep.lapses, rep.since, rep.until,
        seconds_to_us(first.stale_after_s), graces)
    shares = [cover_with_data(st, rep.since, rep.until, spans) for st in rep.stats]
    return {
        "since": format_time(rep.since), "until": format_time(rep.until),
        "events": rep.events, "late_events": rep.late_events,
        "lapses": lapses,
        "no_data": [{"start": s["start"], "end": s["end"], "purges": s["purges"],
                     "note": "no data (purged)"} for s in spans],
        "rules": [{"post": st.post, "rule": st.rule, "need": st.need, "lapses": st.lapses,
                   "alerts": st.alerts, "longest_lapse_s": st.longest_lapse_us / US_PER_S,
                   "cover_pct": pct, "no_data_s": gone / US_PER_S}
                  for st, (pct, gone) in zip(rep.stats, shares, strict=True)],
    }


# -- alerts ------------------------------------------------------------------------


class AlertAction(BaseModel):
    note: str = Field(default="", max_length=2000)


async def _alert_action(svc: SiteUnit, alert_id: str, who: Principal, note: str,
                        what: str) -> dict[str, Any]:
    try:
        alert = await (handlers.acknowledge if what == "acknowledge" else handlers.close_alert)(
            svc, alert_id, who.name, note)
    except UnknownAlertError:
        raise HTTPException(404, f"no alert {alert_id}") from None
    except AlertLifecycleError as e:
        raise HTTPException(409, str(e)) from None
    return alert.to_record()


@router.post("/api/v1/alerts/{alert_id}/acknowledge", responses=problems(400, 404, 409, 422))
async def acknowledge(
    alert_id: str, body: AlertAction, svc: Svc, request: Request,
    who: Annotated[Principal, Depends(require("supervisor", "admin"))],
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Take ownership of an alert, with a note: stops its escalation. With an
    ``Idempotency-Key`` header a retry is done once (docs/server.md)."""
    return await once(request, svc, who, body,
                      lambda: _alert_action(svc, alert_id, who, body.note, "acknowledge"))


@router.post("/api/v1/alerts/{alert_id}/close", responses=problems(400, 404, 409, 422))
async def close_alert(
    alert_id: str, body: AlertAction, svc: Svc, request: Request,
    who: Annotated[Principal, Depends(require("supervisor", "admin"))],
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Put away an alert whose cover has been restored, with a note (``Idempotency-Key``
    as for acknowledging)."""
    return await once(request, svc, who, body,
                      lambda: _alert_action(svc, alert_id, who, body.note, "close"))


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


@router.get("/api/v1/devices")
async def devices(svc: Svc, who: Annotated[Principal, Depends(require("admin"))]) -> Any:
    return {"devices": [
        {"name": d.name, "officer": d.officer, "active": d.active}
        for d in await asyncio.to_thread(svc.store.list_devices) if d.site == svc.store.site
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


async def _apply(svc: SiteUnit, who: Principal, text: str | None, reason: str) -> Any:
    from coverwatch.errors import SiteFileError
    from coverwatch.server.handlers.site import apply_site
    from coverwatch.server.siteapply import ApplyRefused

    try:
        if text is None:
            result = await handlers.reload_site(svc, who.name, who.roles_at(svc.store.site), reason)
        else:
            result = await apply_site(svc, text, actor=who.name,
                                      roles=who.roles_at(svc.store.site), reason=reason)
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
