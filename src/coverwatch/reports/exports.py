"""Exports of stored history: tracks, lapses and alerts for [since, until).

Tracks are the stored fixes in the range (at the lon/lat they were sent with,
when they were sent so, and with where their accuracy came from); lapses are recomputed from every
stored event (late ones included, as in reports) under the rules in force;
alerts are the alert records raised in the range. The file formats are in
:mod:`coverwatch.formats.exports`.
"""

from __future__ import annotations

import math
from typing import Any

from coverwatch.errors import CoverwatchError
from coverwatch.formats.exports import (
    ExportedLapse,
    History,
    history_csv,
    history_geojson,
    history_gpx,
)
from coverwatch.formats.sitefile import load_site_text_document
from coverwatch.reports.history import recompute
from coverwatch.storage import Store
from coverwatch.storage.versions import SiteVersion, load_versions

__all__ = ["FORMATS", "ExportError", "collect_history", "export_history"]

FORMATS = ("geojson", "gpx", "csv")


class ExportError(CoverwatchError, ValueError):
    """An export that cannot be made; ``field`` names the option at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _sent_lonlat(raw: Any) -> tuple[float, float] | None:
    """The lon/lat the fix was sent with (exported as sent, so a re-import of the export
    projects to the very same site metres and is recognised as already stored)."""
    if not isinstance(raw, dict):
        return None
    nested = raw.get("coords")
    coords: dict[str, Any] = nested if isinstance(nested, dict) else raw
    if "lat" not in coords and isinstance(raw.get("location"), str):  # OsmAnd location=lat,lon
        lat_text, _, lon_text = str(raw["location"]).partition(",")
        coords = {"lat": lat_text.strip(), "lon": lon_text.strip()}
    lat = _number(coords.get("lat", coords.get("latitude")))
    lon = _number(coords.get("lon", coords.get("longitude")))
    return None if lat is None or lon is None else (lon, lat)


def collect_history(store: Store, source: str, since: int, until: int) -> History:
    """Gather what an export of [since, until) holds, with the current site's geometry."""
    if until <= since:
        raise ExportError("until", "until must be after since")
    site = load_site_text_document(source, "<site>").site
    h = History(site.id, site.name, site.timezone, site.origin, since, until,
                {p.id: p for p in site.posts})
    for row in store.events_between(since, until):
        if row["kind"] != "fix" or row["x"] is None:
            continue
        acc = row.get("accuracy")
        h.tracks.setdefault(str(row["officer"]), []).append(
            (int(row["t_us"]), float(row["x"]), float(row["y"]),
             None if acc is None or not math.isfinite(acc) else float(acc),
             row.get("accuracy_source") or "none", _sent_lonlat(row.get("raw"))))
    versions = load_versions(store) or [SiteVersion(0, source)]
    report = recompute(store, versions, until=until - 1, since=since)
    h.lapses = [ExportedLapse(lp.post, lp.rule, lp.start, lp.end, lp.alert_at, lp.min_cover)
                for lp in report.lapses]
    h.alerts = [a for a in store.load_alerts()
                if a.get("alert_at") is not None and since <= int(a["alert_at"]) < until]
    return h


def export_history(store: Store, source: str, since: int, until: int, format: str) -> bytes:
    """The export file's bytes; raises :class:`ExportError` for what cannot be exported."""
    if format not in FORMATS:
        raise ExportError("format", f"unknown format {format!r}; use geojson, gpx or csv")
    h = collect_history(store, source, since, until)
    if format == "csv":
        return history_csv(h)
    try:
        return history_geojson(h) if format == "geojson" else history_gpx(h)
    except ValueError as e:
        raise ExportError("format", f"{e}; give the site file an origin, or export CSV "
                                    "(site metres)") from None
