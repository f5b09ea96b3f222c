"""Officers' tracks, lapses and alerts for a time range as GeoJSON, GPX or CSV.

Every time is UTC, written as RFC 3339 with ``Z`` (GPX requires UTC); each
file also names the site's local time zone so a reader can convert:
GeoJSON in the collection's ``coverwatch.timezone`` (with ``times: "UTC"``),
GPX in its metadata description, CSV in the ``t_utc``/``end_utc`` column
names and a ``site_timezone`` column. Positions are lon/lat projected back
from site metres around the site's origin (GeoJSON and GPX need one; CSV
always has site metres ``x``/``y`` and lon/lat when there is an origin).
CSV text cells that a spreadsheet would run as a formula are quoted
(:mod:`coverwatch.formats.csvcells`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from dataclasses import dataclass, field
from typing import Any

import orjson

from coverwatch.domain.site import LatLon, Post
from coverwatch.domain.time import format_time
from coverwatch.formats.csvcells import safe_row
from coverwatch.formats.geojson import xy_to_lonlat

__all__ = ["CSV_COLUMNS", "ExportedLapse", "History", "history_csv", "history_geojson",
           "history_gpx"]

CSV_COLUMNS = ("type", "t_utc", "end_utc", "officer", "post", "rule", "x", "y", "lon", "lat",
               "accuracy_m", "alert_utc", "min_cover", "state", "alert_id", "site_timezone")


@dataclass(frozen=True, slots=True)
class ExportedLapse:
    post: str
    rule: str
    start: int
    end: int | None
    alert_at: int | None
    min_cover: int


@dataclass
class History:
    """What an export holds: per-officer fixes, lapses and alert records.

    A fix is ``(t_us, x, y, accuracy[, accuracy_source, (lon, lat) as sent or None])``.
    """

    site_id: str
    site_name: str
    timezone: str
    origin: LatLon | None
    since: int
    until: int
    posts: dict[str, Post]
    tracks: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    lapses: list[ExportedLapse] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def lonlat(self, x: float, y: float) -> list[float]:
        assert self.origin is not None
        return list(xy_to_lonlat(x, y, self.origin))

    def fix_lonlat(self, fix: tuple[Any, ...]) -> list[float]:
        """A fix's lon/lat: as sent if known, else projected back from site metres."""
        sent = fix[5] if len(fix) > 5 else None
        return list(sent) if sent is not None else self.lonlat(fix[1], fix[2])

    def post_xy(self, post_id: str) -> tuple[float, float] | None:
        """A post's point, or the mean of its area's corners."""
        post = self.posts.get(post_id)
        if post is None:
            return None
        if post.at is not None:
            return post.at
        area = post.area or ()
        return (sum(p[0] for p in area) / len(area), sum(p[1] for p in area) / len(area))


def _t(value: Any) -> str | None:
    if value is None:
        return None
    return format_time(int(value))


def _alert_position(h: History, a: dict[str, Any]) -> tuple[tuple[float, float] | None,
                                                              list[float] | None]:
    """Where an alert was: its post's point, else (an SOS, a fall) the officer's position it
    carries; as (site metres, lon/lat) with lon/lat None without an origin."""
    xy = h.post_xy(str(a.get("post") or ""))
    if xy is not None:
        return xy, (h.lonlat(*xy) if h.origin is not None else None)
    details: dict[str, Any] = a["details"] if isinstance(a.get("details"), dict) else {}
    pos = details.get("position") if isinstance(details.get("position"), dict) else None
    if pos is None or not all(isinstance(pos.get(k), int | float) for k in ("x", "y")):
        return None, None
    xy = (float(pos["x"]), float(pos["y"]))
    lat, lon = pos.get("lat"), pos.get("lon")
    try:
        sent = [float(lon), float(lat)] if lat is not None and lon is not None else None
    except (TypeError, ValueError):
        sent = None
    return xy, sent or (h.lonlat(*xy) if h.origin is not None else None)


def _alert_officer(a: dict[str, Any]) -> str:
    details: dict[str, Any] = a["details"] if isinstance(a.get("details"), dict) else {}
    return str(details.get("officer") or "")


def _post_geometry(h: History, post_id: str) -> dict[str, Any] | None:
    post = h.posts.get(post_id)
    if post is None or h.origin is None:
        return None
    if post.at is not None:
        return {"type": "Point", "coordinates": h.lonlat(*post.at)}
    ring = [h.lonlat(*p) for p in post.area or ()]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def history_geojson(h: History) -> bytes:
    """A FeatureCollection: one LineString per officer (times per vertex), lapses, alerts."""
    if h.origin is None:
        raise ValueError("the site has no origin, so positions cannot be put on a map")
    features: list[dict[str, Any]] = []
    for officer, fixes in sorted(h.tracks.items()):
        coords = [h.fix_lonlat(f) for f in fixes]
        geometry = ({"type": "Point", "coordinates": coords[0]} if len(coords) == 1
                    else {"type": "LineString", "coordinates": coords})
        features.append({"type": "Feature", "geometry": geometry, "properties": {
            "kind": "track", "officer": officer, "start": _t(fixes[0][0]),
            "end": _t(fixes[-1][0]), "fixes": len(fixes),
            "times": [_t(t) for t, *_ in fixes],
            "accuracy_m": [f[3] for f in fixes]}})
    for lp in h.lapses:
        features.append({"type": "Feature", "geometry": _post_geometry(h, lp.post),
                         "properties": {"kind": "lapse", "post": lp.post, "rule": lp.rule,
                                        "start": _t(lp.start), "end": _t(lp.end),
                                        "alert_at": _t(lp.alert_at),
                                        "min_cover": lp.min_cover}})
    for a in h.alerts:
        where: dict[str, Any] | None = _post_geometry(h, str(a["post"]))
        if where is None:
            _, at = _alert_position(h, a)
            where = None if at is None else {"type": "Point", "coordinates": at}
        features.append({"type": "Feature", "geometry": where,
                         "properties": {"kind": "alert", "id": a["id"], "post": a["post"],
                                        "alert_kind": a.get("kind", "lapse"),
                                        "officer": _alert_officer(a) or None,
                                        "rule": a["rule"], "state": a["state"],
                                        "lapse_start": _t(a.get("lapse_start")),
                                        "alert_at": _t(a.get("alert_at")),
                                        "acknowledged_by": a.get("acknowledged_by"),
                                        "acknowledged_at": _t(a.get("acknowledged_at")),
                                        "resolved_at": _t(a.get("resolved_at"))}})
    return orjson.dumps({
        "type": "FeatureCollection", "name": f"{h.site_name}: {_t(h.since)} to {_t(h.until)}",
        "coverwatch": {"site": h.site_id, "since": _t(h.since), "until": _t(h.until),
                       "times": "UTC", "timezone": h.timezone,
                       "origin": {"lat": h.origin.lat, "lon": h.origin.lon}},
        "features": features}, option=orjson.OPT_INDENT_2)


def _dt_of(t_us: int) -> _dt.datetime:
    return _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(microseconds=t_us)


def history_gpx(h: History) -> bytes:
    """GPX 1.1: one track per officer; lapses and alerts as waypoints at their posts."""
    from coverwatch.formats.gpx import GpxWaypoint, write_gpx

    if h.origin is None:
        raise ValueError("the site has no origin, so positions cannot be put on a map")
    tracks: list[tuple[str, list[tuple[Any, ...]]]] = []
    for officer, fixes in sorted(h.tracks.items()):
        points: list[tuple[Any, ...]] = []
        for fix in fixes:
            lon, lat = h.fix_lonlat(fix)
            source = fix[4] if len(fix) > 4 else "reported"
            points.append((_dt_of(fix[0]), lat, lon, fix[3], source))
        tracks.append((officer, points))
    waypoints: list[GpxWaypoint] = []
    for lp in h.lapses:
        xy = h.post_xy(lp.post)
        if xy is not None:
            lon, lat = h.lonlat(*xy)
            end = _t(lp.end) or "still open"
            waypoints.append(GpxWaypoint(lat, lon, _dt_of(lp.start), f"lapse {lp.post}/{lp.rule}",
                                         f"until {end}; lowest cover {lp.min_cover}"))
    for a in h.alerts:
        _, at = _alert_position(h, a)
        if at is not None and a.get("alert_at") is not None:
            lon, lat = at
            waypoints.append(GpxWaypoint(lat, lon, _dt_of(int(a["alert_at"])),
                                         f"alert {a['post'] or a.get('kind')}/{a['rule']}",
                                         f"{a['state']}; id {a['id']}"))
    text = write_gpx(tracks, waypoints)
    note = f"<!-- coverwatch {h.site_id}: times UTC; site time zone {h.timezone} -->\n"
    head, _, rest = text.partition("\n")
    return (head + "\n" + note + rest).encode()


def history_csv(h: History) -> bytes:
    """One row per fix, lapse and alert (``type``), times in UTC."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)

    def ll(xy: tuple[float, float] | None) -> list[Any]:
        if xy is None:
            return ["", "", "", ""]
        return [xy[0], xy[1], *(h.lonlat(*xy) if h.origin is not None else ["", ""])]

    rows: list[tuple[int, list[Any]]] = []
    for officer, fixes in sorted(h.tracks.items()):
        for fix in fixes:
            t, x, y, a = fix[:4]
            lonlat = h.fix_lonlat(fix) if h.origin is not None else ["", ""]
            rows.append((t, ["fix", _t(t), "", officer, "", "", x, y, *lonlat,
                             "" if a is None else a, "", "", "", ""]))
    for lp in h.lapses:
        rows.append((lp.start, ["lapse", _t(lp.start), _t(lp.end) or "", "", lp.post, lp.rule,
                                *ll(h.post_xy(lp.post)), "", _t(lp.alert_at) or "",
                                lp.min_cover, "", ""]))
    for alert in h.alerts:
        t = int(alert.get("alert_at") or alert.get("lapse_start") or 0)
        xy, at = _alert_position(h, alert)
        empty: list[Any] = ["", ""]
        place: list[Any] = [*empty, *empty] if xy is None else [*xy, *(at or empty)]
        rows.append((t, ["alert", _t(alert.get("lapse_start")),
                         _t(alert.get("resolved_at")) or "", _alert_officer(alert),
                         alert["post"], alert["rule"], *place, "",
                         _t(alert.get("alert_at")) or "", "", alert["state"], alert["id"]]))
    rows.sort(key=lambda r: r[0])
    for _, row in rows:  # text cells that a spreadsheet would run are quoted
        w.writerow(safe_row([*row, h.timezone]))
    return out.getvalue().encode()

