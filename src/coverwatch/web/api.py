"""JSON endpoints the dashboard needs beyond the server's API.

* ``GET /api/v1/site`` — the site's geometry and rules, for the plan;
* ``GET /api/v1/site/background`` — the site-plan image the site file names
  (served as an image only: no script in an SVG ever runs);
* ``GET /api/v1/plan`` — officers with positions, duty, devices and the rules
  they count for, gates and flags, at the live horizon;
* ``GET /api/v1/timeline?hours=N`` — per rule, the covered / lapsed / inactive
  periods of the last N hours, kept by the live engine;
* ``GET /api/v1/cover/at?t=ISO`` — the state at a past moment (replay), computed
  by evaluating the stored events up to ``t`` with the same engine.

Times are given both as ISO strings and as epoch milliseconds (``*_ms``) so the
browser need not parse microseconds. Every route requires one of the
supervision roles.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from coverwatch.domain.planimage import PlanImage
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time, parse_time, seconds_to_us
from coverwatch.errors import CoverwatchError
from coverwatch.http.access import SUPERVISION, Principal, require, site_unit
from coverwatch.http.problems import problems
from coverwatch.server.live import LiveCover, OfficerView, Position
from coverwatch.server.unit import SiteUnit

__all__ = ["alert_state_at", "router", "state_at"]

router = APIRouter()

Svc = Annotated[SiteUnit, Depends(site_unit)]
Watcher = Annotated[Principal, Depends(require(*SUPERVISION))]

# How many stored events a replay may evaluate (memory bound for one request).
MAX_REPLAY_EVENTS = 2_000_000


def _ms(t_us: int | None) -> int | None:
    return None if t_us is None else t_us // 1000


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


def background_json(bg: PlanImage | None, origin: Any) -> dict[str, Any] | None:
    """The plan's background: the image's size, its pixel -> site map (``[a, b, c, d,
    e, f]``: x = a*u + c*v + e, y = b*u + d*v + f) and the map-tile URL, if any."""
    if bg is None:
        return None
    image = None
    if bg.transform is not None and bg.file is not None:
        image = {"href": "/api/v1/site/background", "width": bg.width, "height": bg.height,
                 "transform": bg.transform.as_list(), "name": bg.image}
    tiles = None
    if bg.tiles is not None and origin is not None:
        tiles = {"url": bg.tiles, "origin": [origin.lat, origin.lon],
                 "attribution": bg.attribution}
    return {"image": image, "tiles": tiles} if image or tiles else None


def site_json(site: Site, levels: int, background: PlanImage | None = None) -> dict[str, Any]:
    """The site as the plan draws it (site metres; +y is north)."""
    return {
        "background": background_json(background, site.origin),
        "id": site.id, "name": site.name, "timezone": site.timezone,
        "stale_after_s": site.stale_after_s, "escalation_levels": levels,
        "posts": [{
            "id": p.id, "name": p.name, "gate": p.gate,
            "at": list(p.at) if p.at else None,
            "area": [list(pt) for pt in p.area] if p.area else None,
            "rules": [{
                "id": r.id, "need": r.need, "within_m": _finite(r.within_m),
                "release_m": _finite(r.release_m), "grace_s": r.grace_s,
                "capability": r.capability, "when": r.when,
                "when_gate_open": r.when_gate_open, "reach_s": r.reach_s,
            } for r in p.rules],
        } for p in site.posts],
        "walkways": [{"id": w.id, "points": [list(pt) for pt in w.points],
                      "one_way": w.one_way} for w in site.walkways],
        "barriers": [{"id": b.id, "points": [list(pt) for pt in b.points]}
                     for b in site.barriers],
    }


def _officers_json(
    views: Iterable[OfficerView], positions: Mapping[str, Position], horizon: int,
    devices: Mapping[str, list[str]],
) -> list[dict[str, Any]]:
    out = []
    for o in views:
        pos = positions.get(o.officer)
        age = None if o.last_fix_us is None else max(0.0, (horizon - o.last_fix_us) / US_PER_S)
        out.append({
            "officer": o.officer, "on_duty": o.on_duty, "capabilities": list(o.capabilities),
            "last_fix": None if o.last_fix_us is None else format_time(o.last_fix_us),
            "last_fix_age_s": age, "stale": o.stale,
            "counts_for": [{"post": p, "rule": r} for p, r in o.rules],
            "x": None if pos is None else pos.x, "y": None if pos is None else pos.y,
            "accuracy_m": None if pos is None else pos.accuracy_m,
            "devices": devices.get(o.officer, []),
        })
    return out


def alert_state_at(record: Mapping[str, Any], t_us: int) -> str | None:
    """An alert's lifecycle state at ``t_us`` from its record's times; None if not raised yet."""
    if record["alert_at"] > t_us:
        return None
    for key, state in (("closed_at", "closed"), ("resolved_at", "resolved"),
                       ("acknowledged_at", "acknowledged")):
        at = record.get(key)
        if at is not None and at <= t_us:
            return state
    return "open"


def _alert_json(record: Mapping[str, Any], state: str | None = None) -> dict[str, Any]:
    out = dict(record)
    if state is not None:
        out["state"] = state
    for key in ("lapse_start", "alert_at", "acknowledged_at", "resolved_at", "closed_at"):
        out[f"{key}_ms"] = _ms(record.get(key))
    return out


def _devices_by_officer(svc: SiteUnit) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in svc.store.list_devices():
        if d.active and d.officer:
            out.setdefault(d.officer, []).append(d.name)
    return out


def state_at(svc: SiteUnit, t_us: int) -> dict[str, Any]:
    """The whole dashboard state at ``t_us`` (inclusive), from the stored events.

    Evaluates the stored events with ``t <= t_us`` (late ones included, as reports
    do) under the rules in force at each moment, with the engine the live server
    and ``coverwatch replay`` use, starting from the newest report checkpoint at or
    before ``t_us`` (so the cost does not grow with the stored history).
    """
    from coverwatch.reports.history import run_engine
    from coverwatch.storage.versions import SiteVersion, load_versions

    versions = load_versions(svc.store) or [SiteVersion(0, svc.doc.source)]
    run, evaluated = run_engine(svc.store, versions, to=t_us + 1, resume_before=t_us,
                                close=False, save_until=svc.shown.horizon)
    if evaluated > MAX_REPLAY_EVENTS:
        raise HTTPException(413, f"more than {MAX_REPLAY_EVENTS} events to evaluate")
    if run is None:
        live = LiveCover(svc.site, lateness_us=0, start_horizon=t_us)
        live.advance_to(t_us + 1)
    else:
        live = LiveCover.from_engine(run.engine.site, run.engine, run.registry)
    alerts = []
    records = svc.book.to_records()
    if svc.book.held_since is not None:  # older closed alerts are not held since the start
        held = {r["id"] for r in records}
        records += [r for r in svc.store.load_alerts() if r["id"] not in held]
        records.sort(key=lambda r: (r["alert_at"], r["id"]))
    for rec in records:
        state = alert_state_at(rec, t_us)
        if state is not None:
            alerts.append(_alert_json(rec, state))
    return {
        "t": format_time(t_us), "t_ms": _ms(t_us),
        "rules": live.cover_states(),
        "officers": _officers_json(live.officers(), live.positions(), t_us,
                                   _devices_by_officer(svc)),
        "gates": live.gates(), "flags": live.flags(), "alerts": alerts,
        "events": 0 if run is None else run.events,
    }


# -- routes -------------------------------------------------------------------


@router.get("/api/v1/site")
async def site(svc: Svc, who: Watcher) -> dict[str, Any]:
    """The site's posts, rules, walkways and barriers (site metres) for the plan."""
    return site_json(svc.site, len(svc.doc.escalation), svc.doc.background)


# Served as a picture, never as a page: an SVG's scripts and links stay inert even
# when the image is opened on its own (the sandbox gives it an opaque origin).
_IMAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src data:; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=300",
    "Content-Disposition": "inline",
}


def _read_background(path: str) -> bytes:
    from coverwatch.formats.sitefile import MAX_PLAN_IMAGE_BYTES

    with open(path, "rb") as f:
        return f.read(MAX_PLAN_IMAGE_BYTES + 1)


@router.get("/api/v1/site/background", response_class=Response, responses=problems(404))
async def site_background(svc: Svc, who: Watcher) -> Response:
    """The site-plan image the site file's ``background.image`` names (PNG or SVG), to
    the site's supervision roles only."""
    from coverwatch.formats.sitefile import MAX_PLAN_IMAGE_BYTES

    bg = svc.doc.background
    if bg is None or bg.file is None or bg.media_type is None:
        raise HTTPException(404, "this site's file names no plan image (background.image)")
    try:
        data = await asyncio.to_thread(_read_background, bg.file)
    except OSError:
        raise HTTPException(404, f"the plan image {bg.image!r} cannot be read on the "
                                 "server now (moved or removed since the site was "
                                 "loaded?)") from None
    if len(data) > MAX_PLAN_IMAGE_BYTES:
        raise HTTPException(404, f"the plan image {bg.image!r} has grown past "
                                 f"{MAX_PLAN_IMAGE_BYTES} bytes since the site was loaded")
    return Response(data, media_type=bg.media_type, headers=_IMAGE_HEADERS)


@router.get("/api/v1/plan")
async def plan(svc: Svc, who: Watcher) -> dict[str, Any]:
    """Officers (with positions and devices), gates and flags at the live horizon."""
    from coverwatch.server.devices import officer_devices, reporting_only

    devices = await asyncio.to_thread(_devices_by_officer, svc)
    live = svc.shown
    horizon = live.horizon
    views = live.officers()
    views += reporting_only(views, svc.watch)
    officers = _officers_json(views, live.positions(), horizon, devices)
    now = svc.clock()
    for view, out in zip(views, officers, strict=True):  # what the devices say
        out |= officer_devices(view, svc.watch, now)
    return {
        "horizon": format_time(horizon), "horizon_ms": _ms(horizon),
        "officers": officers, "gates": live.gates(), "flags": live.flags(),
    }


@router.get("/api/v1/alerts/board")
async def alert_board(svc: Svc, who: Watcher) -> dict[str, Any]:
    """Every alert with millisecond times and the live horizon, for the alerts panel."""
    from coverwatch.server.alertviews import alerts_json

    return {"horizon_ms": _ms(svc.shown.horizon),
            "alerts": [_alert_json(a) for a in alerts_json(svc, svc.book.alerts())]}


@router.get("/api/v1/timeline")
async def timeline(
    svc: Svc, who: Watcher,
    hours: Annotated[float, Query(gt=0, le=168)] = 4.0,
) -> dict[str, Any]:
    """Per rule, the periods of the last ``hours`` (up to the horizon), as the live engine saw them.

    Each segment is ``[start_ms, end_ms, state, count]``; ``state`` is
    ``inactive``, ``covered`` or ``lapsed``. ``alerts`` lists when lapses
    outlived their grace.
    """
    end = svc.shown.horizon
    stats = svc.shown.timelines()
    # No strip before the first recorded point: the window shows data, not emptiness.
    first = min((st.timeline[0].t for st in stats if st.timeline), default=end)
    start = max(end - seconds_to_us(hours * 3600), min(first, end - US_PER_S))
    rules = []
    for st in stats:
        segs: list[list[Any]] = []
        pts = st.timeline
        for i, p in enumerate(pts):
            s0 = p.t
            s1 = pts[i + 1].t if i + 1 < len(pts) else end
            if s1 <= start or s0 >= end:
                continue
            segs.append([_ms(max(s0, start)), _ms(min(s1, end)), p.state, p.count])
        rules.append({"post": st.post, "rule": st.rule, "need": st.need, "segments": segs})
    alerts = [
        {"post": lp.post, "rule": lp.rule, "start_ms": _ms(lp.start), "end_ms": _ms(lp.end),
         "alert_ms": _ms(lp.alert_at)}
        for lp in svc.shown.lapses()
        if lp.alert_at is not None and (lp.end is None or lp.end > start)
    ]
    return {"start_ms": _ms(start), "end_ms": _ms(end), "first_ms": _ms(first), "rules": rules,
            "alerts": alerts}


@router.get("/api/v1/cover/at", responses=problems(413))
async def cover_at(
    svc: Svc, who: Watcher, t: Annotated[str, Query(min_length=1, max_length=64)],
) -> dict[str, Any]:
    """The state at moment ``t`` (ISO-8601), evaluated from stored events: who counted then."""
    try:
        t_us = parse_time(t)
    except (CoverwatchError, ValueError) as e:
        raise HTTPException(422, f"t: {e}") from None
    if t_us > svc.shown.horizon:
        raise HTTPException(422, "t is after the live horizon; use the live views")
    return await asyncio.to_thread(state_at, svc, t_us)
