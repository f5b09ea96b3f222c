"""Real clients' samples (tests/unit/samples/clients/README.md: origin and licence of each)
read as their authors meant: accuracy 0 is not exact, HDOP is not metres, a simulated
position does not count, and nothing a phone sends stalls it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from coverwatch.domain.site import LatLon, Post, Rule, Site
from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.errors import EventInputError
from coverwatch.formats.accuracy import UERE_M
from coverwatch.formats.gpx import MAX_GPX_FIELD_CHARS, GpxOptions, gpx_records
from coverwatch.formats.osmand import osmand_body_readings, osmand_readings
from coverwatch.formats.owntracks import owntracks_readings, owntracks_records
from coverwatch.formats.validation import validate_records
from coverwatch.server.devices import MOCK_REASON, device_upload

SAMPLES = Path(__file__).parent / "samples" / "clients"
_RULE = Rule("cover", 1, within_m=25.0, release_m=25.0)
SITE = Site("s", "S", (Post("gate", "Gate", (_RULE,), at=(0.0, 0.0)),),
            origin=LatLon(51.5, -0.12), default_accuracy_m=40.0)


def _upload(readings: list, received_s: float) -> tuple[list[dict], list[dict]]:
    up = device_upload(readings, SITE, officer="A1", device="p",
                       received_us=round(received_s * US_PER_S), max_future_us=30 * US_PER_S)
    return up.rows, up.reports


def _decoder_samples() -> dict:
    return json.loads((SAMPLES / "traccar-osmand-decoder.json").read_text())


def test_traccar_client_8_accuracy_zero_is_the_site_default_not_exact() -> None:
    params = dict(parse_qsl((SAMPLES / "traccar-client8-query.txt").read_text().strip()))
    rows, (report,) = _upload(osmand_readings(params), 1893484801)
    assert (rows[0]["accuracy"], rows[0]["accuracy_source"]) == (40.0, "default")
    assert report["battery"] == 87.0


@pytest.mark.parametrize("n", [0, 1])
def test_osmand_hdop_zero_and_hacc_zero_are_the_site_default(n: int) -> None:
    params = dict(parse_qsl(_decoder_samples()["query"][n]))
    params.setdefault("timestamp", "1377177267")
    params["lat"], params["lon"] = "51.5", "-0.12"  # at the site; the rest as Traccar sent it
    rows, _ = _upload(osmand_readings(params), 1377177268)
    assert (rows[0]["accuracy"], rows[0]["accuracy_source"]) == (40.0, "default")


def test_osmand_hdop_in_metres_is_kept() -> None:
    params = dict(parse_qsl(_decoder_samples()["query"][2]))
    params["lat"], params["lon"] = "51.5", "-0.12"
    rows, _ = _upload(osmand_readings(params), parse_time("2016-01-27T18:55:48Z") / US_PER_S)
    assert (rows[0]["accuracy"], rows[0]["accuracy_source"]) == (6.0, "hdop")


def test_mock_location_is_a_device_report_that_does_not_count() -> None:
    body = _decoder_samples()["json_mock"]
    body["location"]["coords"].update(latitude=51.5, longitude=-0.12)
    rows, (report,) = _upload(osmand_body_readings(body),
                              parse_time("2025-05-09T04:11:31Z") / US_PER_S)
    assert rows == []
    assert report["used"] is False and report["reason"] == MOCK_REASON
    params = {"lat": "51.5", "lon": "-0.12", "timestamp": "1893484800", "mock": "true"}
    rows, (report,) = _upload(osmand_readings(params), 1893484801)
    assert rows == [] and report["reason"] == MOCK_REASON


def test_client_sdk_upload_json_array_is_readings() -> None:
    body = json.loads((SAMPLES / "client-sdk-upload-json.json").read_text())
    rows, reports = _upload(osmand_body_readings(body), 1893484811)
    assert [(r["accuracy"], r["accuracy_source"]) for r in rows] == [
        (8.0, "reported"), (40.0, "default")]
    assert [r["battery"] for r in reports] == [87.0, 87.0]


def test_owntracks_booklet_locations_keep_battery_and_fields_in_a_device_report() -> None:
    payload = json.loads((SAMPLES / "owntracks-booklet-locations.json").read_text())
    for loc in payload:
        loc["lat"], loc["lon"], loc["tst"] = 51.5, -0.12, 1893484800
    message = owntracks_records(payload, "A1", default_accuracy_m=40.0)
    rows, reports = _upload(owntracks_readings(message), 1893484801)
    assert [(r["accuracy"], r["accuracy_source"]) for r in rows] == [
        (40.0, "default"), (5.0, "reported")]
    assert (reports[1]["battery"], reports[1]["charging"]) == (41.0, True)
    assert {k: reports[1]["raw"][k] for k in ("tid", "conn", "vac", "vel")} == {
        "tid": "JJ", "conn": "w", "vac": 21, "vel": 61}
    assert all(r["used"] for r in reports)


def test_owntracks_acc_zero_is_not_exact() -> None:
    message = owntracks_records({"_type": "location", "lat": 51.5, "lon": -0.12, "acc": 0,
                                 "tst": 1893484800}, "A1", default_accuracy_m=40.0)
    rows, _ = _upload(owntracks_readings(message), 1893484801)
    assert (rows[0]["accuracy"], rows[0]["accuracy_source"]) == (40.0, "default")


def _gpx_rows(path: Path) -> list[dict]:
    recs = gpx_records(path, GpxOptions(track_duty=False), default_accuracy_m=40.0)
    return validate_records([r for _, r in recs], SITE, now_us=parse_time("2031-01-01T00:00:00Z"),
                            max_future_us=0)


def test_gpslogger_hdop_is_unitless_and_scaled() -> None:
    rows = _gpx_rows(SAMPLES / "gpslogger.gpx")
    assert [(r["accuracy"], r["accuracy_source"]) for r in rows] == [
        (pytest.approx(0.8 * UERE_M), "hdop-scaled"), (pytest.approx(2.5 * UERE_M),
                                                       "hdop-scaled")]


def test_gpx_without_accuracy_says_default_not_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.gpx"
    path.write_text((SAMPLES / "gps-week-rollover-1901.gpx").read_text().replace(
        "1901-12-13T20:45:52Z", "2030-01-01T08:00:00Z"))
    (row,) = _gpx_rows(path)
    assert (row["accuracy"], row["accuracy_source"]) == (40.0, "default")


def test_gpx_time_in_1901_is_refused_like_jsonl() -> None:
    with pytest.raises(Exception, match="outside the years 1970 to 2200"):
        _gpx_rows(SAMPLES / "gps-week-rollover-1901.gpx")


def test_gpx_field_longer_than_the_limit_names_the_point(tmp_path: Path) -> None:
    path = tmp_path / "long.gpx"
    path.write_text((SAMPLES / "gpslogger.gpx").read_text().replace(
        "<src>gps</src><sat>4</sat>", f"<src>{'x' * (MAX_GPX_FIELD_CHARS + 1)}</src>"))
    with pytest.raises(EventInputError, match=r"trk\[0\]\.trkseg\[0\]\.trkpt\[1\]\.src"):
        gpx_records(path, GpxOptions(), default_accuracy_m=40.0)


# -- GeoJSON as GDAL and geojson.io write it ------------------------------------------


def test_geojson_crs_epsg_4326_urn_is_lat_lon_and_swapped() -> None:
    from coverwatch.formats.geojson import site_from_geojson

    text = (SAMPLES / "gdal-epsg4326-lat-lon.geojson").read_bytes()
    _, site = site_from_geojson(text, "posts.geojson")
    assert site.origin is not None
    assert (site.origin.lat, site.origin.lon) == pytest.approx((51.50045, -0.12))
    gate, yard = site.posts
    assert yard.at is not None and gate.at is not None
    assert yard.at[1] - gate.at[1] == pytest.approx(100.0, abs=0.5)  # 0.0009 deg north
    assert yard.at[0] == pytest.approx(gate.at[0])


def test_geojson_other_crs_is_an_error_naming_it() -> None:
    from coverwatch.errors import SiteFileError
    from coverwatch.formats.geojson import site_from_geojson

    text = (SAMPLES / "gdal-epsg4326-lat-lon.geojson").read_text().replace(
        "urn:ogc:def:crs:EPSG::4326", "urn:ogc:def:crs:EPSG::3857")
    with pytest.raises(SiteFileError, match="3857"):
        site_from_geojson(text, "posts.geojson")


def test_geojson_io_feature_id_zero_is_the_post_id() -> None:
    from coverwatch.formats.geojson import site_from_geojson

    _, site = site_from_geojson((SAMPLES / "geojsonio-numeric-id.geojson").read_bytes(),
                                "map.geojson")
    assert [p.id for p in site.posts] == ["0"]


def test_gpxpy_test_file_hdop_is_unitless_and_times_without_zone_are_utc() -> None:
    from coverwatch.formats.gpx import read_gpx_tracks

    tracks = [t for t in read_gpx_tracks(SAMPLES / "gpxpy-all-fields-track.gpx") if t.points]
    ((_, point),) = tracks[0].points
    assert (point.accuracy_m, point.accuracy_source) == (pytest.approx(101 * UERE_M),
                                                         "hdop-scaled")
    assert point.t.isoformat() == "2013-01-01T12:00:04+00:00"


def test_the_device_token_is_never_kept_in_raw() -> None:
    # The OsmAnd id is the device's credential; the transistorsoft "_" field repeats it.
    body = _decoder_samples()["json_mock"]
    body["location"]["_"] = "&id=cwd_secret&lat=51.5&lon=-0.12&"
    (reading,) = osmand_body_readings(body)
    assert "_" not in reading.raw
    (reading,) = osmand_readings({"id": "cwd_secret", "lat": "51.5", "lon": "-0.12"})
    assert "id" not in reading.raw
    (reading,) = osmand_body_readings([{"id": "cwd_secret", "lat": 51.5, "lon": -0.12}])
    assert "cwd_secret" not in str(reading.raw)
