"""Exports read back by ``events import`` store nothing new, an export costs what its
window costs whatever old history the store holds, SOS alerts are placed where they were,
and no CSV cell runs as a spreadsheet formula."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson

from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.formats.exports import History, history_csv, history_geojson, history_gpx
from coverwatch.formats.gpx import GpxOptions
from coverwatch.formats.sitefile import load_site_text
from coverwatch.reports.exports import export_history
from coverwatch.server.backfill import import_events
from coverwatch.storage import open_store

# Copenhagen, where the issue saw 55.6761 come back as 55.676100000000005.
SITE = """\
site: cph
origin: {lat: 55.676, lon: 12.568}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 25}
"""
T0 = parse_time("2030-01-01T08:00:00Z")


def test_exported_gpx_imports_as_already_stored(tmp_path: Path) -> None:
    site = load_site_text(SITE)
    store = open_store(None, tmp_path / "data")
    try:
        src = tmp_path / "fixes.jsonl"
        lines = [{"t": "2030-01-01T08:00:00Z", "kind": "duty", "officer": "A7", "on": True}]
        for i, (lat, lon, acc) in enumerate([(55.6761, 12.5683, 4.0), (55.67611, 12.56831, None),
                                             (55.676123456789, 12.568, 7.5),
                                             (55.6762, 12.5684, 0.0), (55.67605, 12.56825, 3.3)]):
            rec = {"t": T0 / US_PER_S + 10 * i, "kind": "fix", "officer": "A7", "lat": lat,
                   "lon": lon}
            if acc is not None:
                rec["accuracy_m"] = acc
            lines.append(rec)
        src.write_bytes(b"\n".join(orjson.dumps(r) for r in lines) + b"\n")
        now = T0 + 3600 * US_PER_S
        first = import_events(store, site, src, now_us=now)
        assert (first.stored, first.duplicates) == (6, 0)
        gpx = export_history(store, SITE, T0, T0 + 3600 * US_PER_S, "gpx")
        path = tmp_path / "export.gpx"
        path.write_bytes(gpx)
        again = import_events(store, site, path, now_us=now,
                              gpx=GpxOptions(track_duty=False))
        assert (again.read, again.stored, again.duplicates) == (5, 0, 5)
    finally:
        store.close()


def test_export_over_one_old_event_costs_the_window_not_the_gap(tmp_path: Path) -> None:
    store = open_store(None, tmp_path / "data")
    try:
        old = T0 - 60 * 24 * 3600 * US_PER_S  # two months before: 1440 hours of nothing
        store.append_events([
            {"kind": "fix", "t_us": old, "officer": "A7", "x": 0.0, "y": 0.0, "accuracy": 5.0,
             "source": "test"},
            {"kind": "fix", "t_us": T0, "officer": "A7", "x": 1.0, "y": 0.0, "accuracy": 5.0,
             "source": "test"},
            {"kind": "fix", "t_us": T0 + 3600 * US_PER_S, "officer": "A7", "x": 2.0, "y": 0.0,
             "accuracy": 5.0, "source": "test"}])
        body = export_history(store, SITE, T0, T0 + 2 * 3600 * US_PER_S, "csv")
        assert body.count(b"\nfix,") == 2
        # A checkpoint per hour with events (and the one after the old event), not per hour.
        assert len(store.checkpoint_times()) <= 4
    finally:
        store.close()


def _history_with_sos() -> History:
    site = load_site_text(SITE)
    h = History(site.id, site.name, "Europe/Copenhagen", site.origin, T0,
                T0 + 3600 * US_PER_S, {p.id: p for p in site.posts})
    h.tracks = {"=HYPERLINK(\"http://evil\",\"x\")": [(T0, -3.5, -2.0, 5.0)]}
    h.alerts = [{"id": "sos-1", "kind": "sos", "post": "", "rule": "officer:A7",
                 "state": "raised", "lapse_start": T0, "alert_at": T0 + US_PER_S,
                 "details": {"officer": "A7", "device": "p", "alarm": "sos",
                             "position": {"x": 10.0, "y": 20.0, "accuracy_m": 5.0,
                                          "time": "2030-01-01T08:00:00Z",
                                          "lat": 55.67618, "lon": 12.56816}}}]
    return h


def test_sos_alert_is_exported_at_the_position_it_carries() -> None:
    h = _history_with_sos()
    gj = orjson.loads(history_geojson(h))
    (alert,) = [f for f in gj["features"] if f["properties"]["kind"] == "alert"]
    assert alert["geometry"] == {"type": "Point", "coordinates": [12.56816, 55.67618]}
    assert (alert["properties"]["officer"], alert["properties"]["alert_kind"]) == ("A7", "sos")
    rows = list(csv.DictReader(io.StringIO(history_csv(h).decode())))
    (row,) = [r for r in rows if r["type"] == "alert"]
    assert (row["officer"], row["x"], row["y"], row["lat"], row["lon"]) == (
        "A7", "10.0", "20.0", "55.67618", "12.56816")
    assert "alert sos/officer:A7" in history_gpx(h).decode()


def test_csv_cells_a_spreadsheet_would_run_are_quoted_numbers_stay() -> None:
    rows = list(csv.reader(io.StringIO(history_csv(_history_with_sos()).decode())))
    fix = next(r for r in rows if r[0] == "fix")
    assert fix[3] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert (fix[6], fix[7]) == ("-3.5", "-2.0")  # negative numbers are not text


def test_records_csv_quotes_formulas_keeps_negative_numbers() -> None:
    from coverwatch.reports.supervision_out import records_csv

    body = records_csv({"orders": [{"officer": "@SUM(A1:A9)", "note": "+1 call",
                                    "delta": -2, "text_number": "-7.25", "tab": "\tx"}]})
    (row,) = list(csv.DictReader(io.StringIO(body.decode())))
    assert (row["officer"], row["note"], row["delta"], row["text_number"], row["tab"]) == (
        "'@SUM(A1:A9)", "'+1 call", "-2", "-7.25", "'\tx")


def test_exports_use_the_lon_lat_each_client_sent() -> None:
    from coverwatch.reports.exports import _sent_lonlat

    assert _sent_lonlat({"lat": "55.6761", "lon": "12.5683"}) == (12.5683, 55.6761)
    assert _sent_lonlat({"location": "55.6761,12.5683"}) == (12.5683, 55.6761)
    assert _sent_lonlat({"coords": {"latitude": 55.6761, "longitude": 12.5683}}) == (
        12.5683, 55.6761)
    assert _sent_lonlat({"x": 1.0, "y": 2.0}) is None
    assert _sent_lonlat({"lat": "nan", "lon": "1"}) is None


def test_exported_phone_fixes_import_as_already_stored(tmp_path: Path) -> None:
    # Fixes a phone sent (the store's key names the device) exported and imported back,
    # as a recovered track would be: the file carries no device, yet nothing is new.
    from urllib.parse import parse_qsl

    from coverwatch.formats.osmand import osmand_readings
    from coverwatch.server.devices import device_upload

    site = load_site_text(SITE)
    store = open_store(None, tmp_path / "data")
    try:
        rows = []
        for i, query in enumerate(["lat=55.6761&lon=12.5683&accuracy=4",
                                   "lat=55.67611&lon=12.56831",
                                   "location=55.6762,12.5684&accuracy=0.0"]):
            params = {**dict(parse_qsl(query)), "timestamp": str(T0 // US_PER_S + 10 * i)}
            up = device_upload(osmand_readings(params), site, officer="A7", device="ph",
                               received_us=T0 + 100 * US_PER_S, max_future_us=30 * US_PER_S)
            rows += [{**r, "source": "osmand", "device": "ph", "received_us": T0}
                     for r in up.rows]
        assert store.append_events(rows).inserted == 3
        path = tmp_path / "export.gpx"
        path.write_bytes(export_history(store, SITE, T0, T0 + 3600 * US_PER_S, "gpx"))
        again = import_events(store, site, path, now_us=T0 + 3600 * US_PER_S,
                              gpx=GpxOptions(track_duty=False))
        assert (again.read, again.stored, again.duplicates) == (3, 0, 3)
    finally:
        store.close()
