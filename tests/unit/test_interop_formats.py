"""Readers and writers of other tools' formats on real-world shaped samples:
OwnTracks messages, GPX tracks (several segments, missing elevation, entities),
GeoJSON sites (a MultiPolygon, a hole), the degrees check, and exports."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.records import RecordRules, check_record
from coverwatch.domain.site import LatLon
from coverwatch.domain.time import parse_time
from coverwatch.errors import EventInputError, SiteFileError
from coverwatch.formats.accuracy import FALLBACK_ACCURACY_M, default_accuracy_m
from coverwatch.formats.eventfiles import read_events
from coverwatch.formats.eventrecords import file_records
from coverwatch.formats.exports import (
    CSV_COLUMNS,
    ExportedLapse,
    History,
    history_csv,
    history_geojson,
    history_gpx,
)
from coverwatch.formats.geojson import (
    degree_findings,
    site_from_geojson,
    site_to_geojson,
    xy_to_lonlat,
)
from coverwatch.formats.gpx import GpxOptions, gpx_records, read_gpx_tracks, write_gpx
from coverwatch.formats.owntracks import OwnTracksError, owntracks_records
from coverwatch.formats.sitefile import load_site_document, load_site_text
from coverwatch.reports.replay import lapse_record, replay_file

SAMPLES = Path(__file__).parent / "samples"
ROOT = Path(__file__).resolve().parents[2]
YARD = ROOT / "examples" / "yard"
QUAY = ROOT / "examples" / "quay"
ORIGIN_SITE = """\
site: t
origin: {lat: 51.5, lon: -0.12}
flags: {open-hours: true}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 25, capability: armed, when: open-hours}
"""


# -- OwnTracks ------------------------------------------------------------------


def test_owntracks_location_with_extra_fields_becomes_one_fix() -> None:
    payload = json.loads((SAMPLES / "owntracks-location.json").read_text())
    msg = owntracks_records(payload, "A7", default_accuracy_m=50.0)
    assert msg.ignored == []
    assert msg.records == [{"kind": "fix", "officer": "A7", "t": 1893484800, "lat": 51.50005,
                            "lon": -0.12003, "accuracy_m": 14}]
    site = load_site_text(ORIGIN_SITE)
    checked = check_record(msg.records[0], RecordRules.of(site))
    assert checked.t == parse_time("2030-01-01T08:00:00Z")
    assert checked.accuracy == 14.0


def test_owntracks_missing_accuracy_is_the_default_never_zero() -> None:
    payload = {"_type": "location", "lat": 51.5, "lon": -0.12, "tst": 1893484800, "tid": "A7"}
    msg = owntracks_records(payload, "A7", default_accuracy_m=default_accuracy_m(None))
    assert msg.records[0]["accuracy_m"] == FALLBACK_ACCURACY_M == 50.0


@pytest.mark.parametrize("kind", ["transition", "waypoint", "waypoints", "lwt", "card",
                                  "status", "cmd"])
def test_owntracks_other_types_are_accepted_and_not_used(kind: str) -> None:
    msg = owntracks_records({"_type": kind, "tst": 1, "desc": "Main gate", "event": "enter"},
                            "A7", default_accuracy_m=50.0)
    assert msg.records == []
    assert msg.ignored == [f"_type {kind!r} is not used"]


def test_owntracks_encrypted_payload_is_flagged_as_unreadable() -> None:
    msg = owntracks_records({"_type": "encrypted", "data": "b64..."}, "A7",
                            default_accuracy_m=50.0)
    assert msg.records == [] and msg.unreadable
    assert "clear the key" in msg.ignored[0]
    assert not owntracks_records({"_type": "lwt"}, "A7", default_accuracy_m=50.0).unreadable


@pytest.mark.parametrize("payload", [[1], "text", {"lat": 1}, {"_type": 3}, None])
def test_owntracks_non_messages_are_errors(payload: object) -> None:
    with pytest.raises(OwnTracksError):
        owntracks_records(payload, "A7", default_accuracy_m=50.0)


# -- GPX --------------------------------------------------------------------------


def test_gpx_several_segments_missing_elevation_and_accuracy_sources() -> None:
    tracks = read_gpx_tracks(SAMPLES / "patrol-several-segments.gpx")
    assert [t.name for t in tracks] == ["A7"]
    points = [p for _, p in tracks[0].points]
    assert [where for where, _ in tracks[0].points] == [
        "trk[0].trkseg[0].trkpt[0]", "trk[0].trkseg[0].trkpt[1]", "trk[0].trkseg[1].trkpt[0]",
        "trk[0].trkseg[1].trkpt[1]", "trk[0].trkseg[2].trkpt[0]"]
    # hdop (metres, as tracking apps write it), an accuracy extension, then none at all.
    assert [p.accuracy_m for p in points] == [6.0, 8.0, 35.5, None, None]
    assert points[3].t == datetime(2025, 1, 1, 8, 2, 10, 500000, tzinfo=UTC)
    assert points[4].t == datetime(2025, 1, 1, 8, 0, 30, tzinfo=UTC)  # 09:00:30+01:00


def test_gpx_records_put_the_officer_on_duty_for_the_track_span() -> None:
    records = [r for _, r in gpx_records(SAMPLES / "patrol-several-segments.gpx",
                                         GpxOptions(capabilities=("armed",)),
                                         default_accuracy_m=40.0)]
    duty = [r for r in records if r["kind"] == "duty"]
    assert duty[0] == {"t": datetime(2025, 1, 1, 8, 0, tzinfo=UTC), "kind": "duty",
                       "officer": "A7", "on": True, "capabilities": ["armed"]}
    assert duty[1]["on"] is False
    assert duty[1]["t"] == datetime(2025, 1, 1, 8, 2, 10, 500000, tzinfo=UTC)
    fixes = [r for r in records if r["kind"] == "fix"]
    assert len(fixes) == 5
    assert fixes[-1]["accuracy_m"] == 40.0  # the default, never 0
    none = gpx_records(SAMPLES / "patrol-several-segments.gpx",
                       GpxOptions(officer="Z9", track_duty=False), default_accuracy_m=40.0)
    assert {r["kind"] for _, r in none} == {"fix"}
    assert {r["officer"] for _, r in none} == {"Z9"}


def test_gpx_replays_like_any_event_file() -> None:
    site = load_site_text(ORIGIN_SITE)
    reader = read_events(SAMPLES / "patrol-several-segments.gpx", site, OfficerRegistry(),
                         gpx=GpxOptions(capabilities=("armed",)))
    batches = list(reader)
    assert sum(len(b.fixes) for b in batches) == 5
    assert sum(len(b.control) for b in batches) == 2


def test_gpx_one_officer_option_for_several_tracks_is_an_error() -> None:
    names = {r["officer"] for _, r in gpx_records(SAMPLES / "two-officers.gpx", GpxOptions(),
                                                  default_accuracy_m=50.0)}
    assert names == {"B2", "C3"}
    with pytest.raises(EventInputError, match="the file has 2 tracks"):
        gpx_records(SAMPLES / "two-officers.gpx", GpxOptions(officer="B2"),
                    default_accuracy_m=50.0)


def test_gpx_without_times_is_an_error_that_says_so() -> None:
    with pytest.raises(EventInputError) as e:
        read_gpx_tracks(SAMPLES / "route-without-times.gpx")
    assert e.value.field == "trk[0].trkseg[0].trkpt[0]"
    assert "no <time>" in str(e.value)


def test_gpx_with_entities_is_refused_before_expansion() -> None:
    with pytest.raises(EventInputError, match="DTD or entities"):
        read_gpx_tracks(SAMPLES / "entities.gpx")


def test_gpx_nested_too_deep_is_refused(tmp_path: Path) -> None:
    deep = "<a>" * 200 + "</a>" * 200
    path = tmp_path / "deep.gpx"
    path.write_text(f'<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">{deep}</gpx>')
    with pytest.raises(EventInputError, match="nested deeper"):
        read_gpx_tracks(path)


@pytest.mark.parametrize("text, message", [
    ("<gpx><trk>", "not well-formed XML"),
    ('<kml xmlns="http://www.opengis.net/kml/2.2"/>', "not a GPX file"),
    ('<gpx version="1.1"/>', "no timed track points"),
])
def test_gpx_broken_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.gpx"
    path.write_text(text)
    with pytest.raises(EventInputError, match=message):
        read_gpx_tracks(path)


def test_track_to_gpx_to_replay_gives_identical_lapses(tmp_path: Path) -> None:
    """A JSONL track and the same track written as GPX replay to the same lapses."""
    site = load_site_text(ORIGIN_SITE)
    start = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
    points = []
    for i in range(120):  # walks out of the 25 m circle and back, twice
        metres = 40.0 * abs(math.sin(i / 12.0))
        lat = 51.5 + metres / 111_195.0
        points.append((start + timedelta(seconds=5 * i), lat, -0.12, 5.0 + i % 3))
    lines = [{"t": start.isoformat(), "kind": "duty", "officer": "A7", "on": True,
              "capabilities": ["armed"]}]
    lines += [{"t": t.isoformat(), "kind": "fix", "officer": "A7", "lat": lat, "lon": lon,
               "accuracy_m": acc} for t, lat, lon, acc in points]
    lines.append({"t": points[-1][0].isoformat(), "kind": "duty", "officer": "A7", "on": False})
    jsonl = tmp_path / "track.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    gpx = tmp_path / "track.gpx"
    gpx.write_text(write_gpx([("A7", points)]))
    a, _ = replay_file(site, jsonl)
    b, _ = replay_file(site, gpx, gpx=GpxOptions(capabilities=("armed",)))
    assert [lapse_record(x) for x in a.lapses] == [lapse_record(x) for x in b.lapses]
    assert len(a.lapses) >= 2
    # Duty given alongside instead: on at the start only, never off.
    duty = tmp_path / "duty.jsonl"
    duty.write_bytes(orjson.dumps(lines[0]) + b"\n")
    jsonl.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines[:-1]))
    c, _ = replay_file(site, jsonl)
    d, _ = replay_file(site, gpx, gpx=GpxOptions(alongside=duty))
    assert [lapse_record(x) for x in c.lapses] == [lapse_record(x) for x in d.lapses]
    records = list(file_records(gpx, site, GpxOptions(alongside=duty)))
    assert [r["kind"] for _, r in records].count("duty") == 1
    assert records[-1][0] == f"{duty} line 1"


# -- GeoJSON sites ------------------------------------------------------------------


def test_example_geojson_site_matches_its_generated_site_file() -> None:
    source, site = site_from_geojson((QUAY / "site.geojson").read_bytes(), "site.geojson")
    committed = (QUAY / "site.yaml").read_text()
    # The plan image was added by hand after the import (GeoJSON carries no image).
    generated, by_hand, added = committed.partition("# Added by hand after the import")
    assert by_hand and "background:" in added
    assert source == generated
    store = site.post("store")
    assert store.area is not None and len(store.area) == 4  # a one-part MultiPolygon
    assert site.post("main-gate").at == (0.0, 0.0)
    assert site.origin == LatLon(12.52, -32.48)
    assert [w.id for w in site.walkways] == ["gate-lane", "yard-path", "store-ramp"]
    assert site.walkways[2].one_way
    assert site.flags == {"open-hours": False}


def test_geojson_hole_parts_and_unknown_property_are_named() -> None:
    with pytest.raises(SiteFileError) as e:
        site_from_geojson((SAMPLES / "hole-and-parts.geojson").read_bytes(), "x.geojson")
    problems = [(p.field, p.message) for p in e.value.problems]
    assert problems[0][0] == "features[0].geometry.coordinates"
    assert "hole" in problems[0][1]
    assert problems[1][0] == "features[1].geometry"
    assert "MultiPolygon of 2 parts" in problems[1][1]
    assert problems[2][0] == "features[2].properties.colour"
    assert "unknown property 'colour'" in problems[2][1]


def _collection(*features: dict[str, object]) -> bytes:
    return orjson.dumps({"type": "FeatureCollection", "features": list(features)})


def test_geojson_rule_problems_point_at_the_feature() -> None:
    point = {"type": "Point", "coordinates": [-0.12, 51.5]}
    text = _collection(
        {"type": "Feature", "properties": {"kind": "walkway", "id": "w"},
         "geometry": {"type": "LineString", "coordinates": [[-0.12, 51.5], [-0.1199, 51.5]]}},
        {"type": "Feature", "properties": {"id": "gate", "rules": '[{"id": "c", "need": 1, '
                                           '"within_m": -5}]'}, "geometry": point})
    with pytest.raises(SiteFileError) as e:
        site_from_geojson(text, "x.geojson")
    assert [p.field for p in e.value.problems] == ["features[1].properties.rules[0].within_m"]
    bad_json = _collection({"type": "Feature", "properties": {"id": "g", "rules": "[{"},
                            "geometry": point})
    with pytest.raises(SiteFileError, match="not valid JSON"):
        site_from_geojson(bad_json, "x.geojson")
    metres = _collection({"type": "Feature", "properties": {"id": "g"},
                          "geometry": {"type": "Point", "coordinates": [530000.0, 180000.0]}})
    with pytest.raises(SiteFileError, match="EPSG:4326"):
        site_from_geojson(metres, "x.geojson")


def test_geojson_origin_is_chosen_given_or_carried() -> None:
    pts = {"type": "Feature", "properties": {"id": "gate"},
           "geometry": {"type": "Point", "coordinates": [-0.12, 51.5]}}
    far = {"type": "Feature", "properties": {"id": "yard"},
           "geometry": {"type": "Point", "coordinates": [-0.118, 51.502]}}
    _, chosen = site_from_geojson(_collection(pts, far), "x")
    assert chosen.origin == LatLon(51.501, -0.119)
    _, given = site_from_geojson(_collection(pts, far), "x", origin=LatLon(51.5, -0.12))
    assert given.post("gate").at == (0.0, 0.0)


def test_site_to_geojson_to_site_keeps_geometry_within_1cm_and_the_lapses(
    tmp_path: Path,
) -> None:
    doc = load_site_document(YARD / "site.yaml")
    collection = site_to_geojson(doc.source, doc.site, origin=LatLon(51.5, -0.12))
    assert collection["coverwatch"]["origin"] == {"lat": 51.5, "lon": -0.12}
    summary = collection["features"][0]["properties"]["summary"]
    assert "armed-cover: 2 armed within 25 m while open-hours" in summary
    source, back = site_from_geojson(orjson.dumps(collection), "yard.geojson")
    for a, b in zip(doc.site.posts, back.posts, strict=True):
        assert (a.id, a.name, a.rules, a.gate, a.orders) == (b.id, b.name, b.rules, b.gate,
                                                              b.orders)
        pa_ = [a.at] if a.at else list(a.area or ())
        pb = [b.at] if b.at else list(b.area or ())
        assert all(math.dist(p, q) <= 0.01 for p, q in zip(pa_, pb, strict=True))
    assert [w.points for w in back.walkways] == [w.points for w in doc.site.walkways]
    assert back.flags == doc.site.flags and back.speeds_mps == doc.site.speeds_mps
    path = tmp_path / "site.yaml"
    path.write_text(source)
    a, _ = replay_file(doc.site, YARD / "roving-patrol.jsonl")
    b, _ = replay_file(load_site_text(source), YARD / "roving-patrol.jsonl")
    assert [lapse_record(x) for x in a.lapses] == [lapse_record(x) for x in b.lapses]
    assert a.lapses


def test_export_needs_an_origin() -> None:
    doc = load_site_document(YARD / "site.yaml")
    site = dataclasses.replace(doc.site, origin=None)
    with pytest.raises(ValueError, match="no origin"):
        site_to_geojson(doc.source, site)


def test_degree_findings() -> None:
    with_origin = ORIGIN_SITE.replace("at: [0, 0]",
                                      "area: [[-0.1201, 51.5], [-0.12, 51.5], [-0.12, 51.5001]]")
    found = degree_findings(load_site_text(with_origin))
    assert len(found) == 1 and found[0].startswith("posts[0].area (post gate)")
    assert "look like degrees" in found[0]
    swapped = ORIGIN_SITE.replace("at: [0, 0]", "at: [51.5002, -0.1203]")
    assert len(degree_findings(load_site_text(swapped))) == 1
    no_origin = ORIGIN_SITE.replace("origin: {lat: 51.5, lon: -0.12}\n", "").replace(
        "at: [0, 0]", "area: [[-0.1201, 51.5], [-0.12, 51.5], [-0.12, 51.5001]]")
    assert "m across" in degree_findings(load_site_text(no_origin))[0]
    assert degree_findings(load_site_document(YARD / "site.yaml").site) == []
    assert degree_findings(load_site_text(ORIGIN_SITE)) == []  # [0, 0] is metres


# -- events read record by record ---------------------------------------------------


def test_file_records_name_where_each_came_from(tmp_path: Path) -> None:
    site = load_site_text(ORIGIN_SITE)
    path = tmp_path / "e.csv"
    path.write_text("t,kind,officer,x,y,capabilities\n2030-01-01T08:00:00Z,duty,A1,,,armed;dog\n"
                    "2030-01-01T08:00:01Z,fix,A1,1.5,2,\n")
    assert list(file_records(path, site)) == [
        ("line 2", {"t": "2030-01-01T08:00:00Z", "kind": "duty", "officer": "A1",
                    "capabilities": ["armed", "dog"]}),
        ("line 3", {"t": "2030-01-01T08:00:01Z", "kind": "fix", "officer": "A1", "x": 1.5,
                    "y": 2.0})]


# -- exports ------------------------------------------------------------------------


def _history() -> History:
    site = load_site_text(ORIGIN_SITE)
    t0 = parse_time("2030-01-01T08:00:00Z")
    h = History(site.id, site.name, "Europe/London", site.origin, t0, t0 + 3_600_000_000,
                {p.id: p for p in site.posts})
    h.tracks = {"A7": [(t0, 0.0, 0.0, 5.0), (t0 + 10_000_000, 10.0, 5.0, None)]}
    h.lapses = [ExportedLapse("gate", "cover", t0 + 20_000_000, None, t0 + 80_000_000, 0)]
    h.alerts = [{"id": "al-1", "post": "gate", "rule": "cover", "state": "raised",
                 "lapse_start": t0 + 20_000_000, "alert_at": t0 + 80_000_000}]
    return h


def test_export_geojson_gpx_csv_state_utc_and_place_on_the_map(tmp_path: Path) -> None:
    h = _history()
    gj = orjson.loads(history_geojson(h))
    assert gj["coverwatch"]["times"] == "UTC" and gj["coverwatch"]["timezone"] == "Europe/London"
    kinds = [f["properties"]["kind"] for f in gj["features"]]
    assert kinds == ["track", "lapse", "alert"]
    track = gj["features"][0]
    assert track["geometry"]["coordinates"][0] == [-0.12, 51.5]
    assert track["properties"]["times"] == ["2030-01-01T08:00:00Z", "2030-01-01T08:00:10Z"]
    lon, lat = track["geometry"]["coordinates"][1]
    assert (lon, lat) == pytest.approx(xy_to_lonlat(10.0, 5.0, LatLon(51.5, -0.12)))
    gpx = history_gpx(h).decode()
    assert "times UTC; site time zone Europe/London" in gpx
    path = tmp_path / "out.gpx"
    path.write_text(gpx)
    tracks = read_gpx_tracks(path)
    assert tracks[0].name == "A7" and [p.accuracy_m for _, p in tracks[0].points] == [5.0, None]
    rows = list(csv.DictReader(io.StringIO(history_csv(h).decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["type"] for r in rows] == ["fix", "fix", "lapse", "alert"]
    assert rows[2]["t_utc"] == "2030-01-01T08:00:20Z" and rows[2]["end_utc"] == ""
    assert rows[3]["alert_utc"] == "2030-01-01T08:01:20Z"
    assert {r["site_timezone"] for r in rows} == {"Europe/London"}
    h.origin = None
    with pytest.raises(ValueError, match="no origin"):
        history_geojson(h)
    assert list(csv.DictReader(io.StringIO(history_csv(h).decode())))[1]["lon"] == ""


def test_generated_example_site_file_is_plain_yaml() -> None:
    data = yaml.safe_load((QUAY / "site.yaml").read_text())
    assert data["posts"][0]["at"] == [0.0, 0.0]


# -- fuzz: any JSON is either a site or a SiteFileError, never a crash ---------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(-200, 200)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=20)
_coords = st.lists(st.floats(-0.13, -0.11), min_size=2, max_size=3).map(
    lambda v: [v[0], 51.5 + (v[1] + 0.12), *v[2:]])
_geometry = st.one_of(
    st.fixed_dictionaries({"type": st.just("Point"), "coordinates": _coords}),
    st.fixed_dictionaries({"type": st.sampled_from(["LineString", "MultiPoint"]),
                           "coordinates": st.lists(_coords, max_size=4)}),
    st.fixed_dictionaries({"type": st.sampled_from(["Polygon", "MultiLineString"]),
                           "coordinates": st.lists(st.lists(_coords, max_size=5), max_size=2)}),
    _json)
_props = st.dictionaries(
    st.sampled_from(["kind", "id", "name", "rules", "gate", "orders", "one_way", "colour"]),
    st.one_of(st.sampled_from(["post", "walkway", "barrier", "gate-1", "[]",
                               '[{"id": "c", "need": 1, "within_m": 5}]']), _json),
    max_size=5)
_feature = st.one_of(st.fixed_dictionaries({"type": st.just("Feature"), "properties": _props,
                                            "geometry": _geometry}), _json)


@settings(max_examples=300, deadline=None)
@given(features=st.lists(_feature, max_size=4), meta=st.one_of(st.none(), _json))
def test_geojson_import_never_crashes(features: list[object], meta: object) -> None:
    doc: dict[str, object] = {"type": "FeatureCollection", "features": features}
    if meta is not None:
        doc["coverwatch"] = meta
    try:
        site_from_geojson(orjson.dumps(doc), "fuzz.geojson")
    except SiteFileError as e:
        assert all(p.message for p in e.problems)


def test_geojson_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = "[" * 5000 + "]" * 5000
    text = '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": ' \
           '{"type": "Point", "coordinates": ' + deep + "}}]}"
    with pytest.raises(SiteFileError):
        site_from_geojson(text, "deep.geojson")


def test_file_records_jsonl_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    site = load_site_text(ORIGIN_SITE)
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text('{"t": 1, "kind": "fix", "officer": "A1", "x": 1, "y": 2}\n\n{not json\n')
    records = file_records(jsonl, site)
    assert next(records) == ("line 1", {"t": 1, "kind": "fix", "officer": "A1", "x": 1, "y": 2})
    with pytest.raises(EventInputError) as e:
        next(records)
    assert e.value.line == 3
    parquet = tmp_path / "e.parquet"
    pq.write_table(pa.table({"t": [1.0, 2.0], "kind": ["duty", "fix"], "officer": ["A1", "A1"],
                             "x": [None, 3.0], "y": [None, 4.0], "on": [True, None],
                             "capabilities": ["armed", None]}), parquet)
    assert list(file_records(parquet, site)) == [
        ("row 1", {"t": 1.0, "kind": "duty", "officer": "A1", "on": True,
                   "capabilities": ["armed"]}),
        ("row 2", {"t": 2.0, "kind": "fix", "officer": "A1", "x": 3.0, "y": 4.0})]
    bad = tmp_path / "e.csv"
    bad.write_text("t,kind,officer,colour\n")
    with pytest.raises(EventInputError, match="unknown column 'colour'"):
        list(file_records(bad, site))
    with pytest.raises(EventInputError, match="cannot tell the format"):
        list(file_records(tmp_path / "e.kml", site))


def test_geojson_feature_id_member_and_geojson_io_styling() -> None:
    text = _collection({"type": "Feature", "id": "gate",
                        "properties": {"stroke": "#555555", "marker-color": "#7e7e7e",
                                       "rules": [{"id": "c", "need": 1, "within_m": 5}]},
                        "geometry": {"type": "Point", "coordinates": [-0.12, 51.5]}})
    _, site = site_from_geojson(text, "x", origin=LatLon(51.5, -0.12))
    assert site.post("gate").at == (0.0, 0.0)
    assert site.post("gate").rules[0].within_m == 5
