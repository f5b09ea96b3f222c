"""OwnTracks' HTTP mode and the export API, end to end through the app.

OwnTracks posts its JSON with HTTP Basic (the device token as password) and
expects a JSON array back; a message it sends must never be refused once it
is authenticated and well formed, or the phone retries it forever.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverwatch.formats.accuracy import FALLBACK_ACCURACY_M
from serverkit import Kit, base_settings, running_server, write_site

SAMPLE = Path(__file__).resolve().parents[1] / "unit" / "samples" / "owntracks-location.json"


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    with running_server(base_settings(write_site(tmp_path), tmp_path / "data")) as k:
        yield k


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _post(kit: Kit, token: str, body: Any, user: str = "alice") -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return kit.client.post("/owntracks", content=content, headers={
        **_basic(user, token), "Content-Type": "application/json",
        "X-Limit-U": user, "X-Limit-D": "phone"})


def _fixes(kit: Kit) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = kit.svc.store.events_since(0, limit=1000)
    return [r for r in rows if r["kind"] == "fix"]


def test_owntracks_location_is_stored_once_and_answered_with_an_array(kit: Kit) -> None:
    _, token = kit.device("alice-phone", "A7")
    payload = json.loads(SAMPLE.read_text())  # extra fields: BSSID, SSID, inregions, ...
    r = _post(kit, token, payload)
    assert r.status_code == 200, r.text
    assert r.json() == []
    rows = _fixes(kit)
    assert len(rows) == 1
    row = rows[0]
    assert (row["officer"], row["source"], row["device"], row["accuracy"]) == (
        "A7", "owntracks", "alice-phone", 14.0)
    assert row["x"] == pytest.approx(-2.07, abs=0.01) and row["y"] == pytest.approx(5.56, abs=0.01)
    # OwnTracks re-sends after a lost answer: stored once.
    assert _post(kit, token, payload).json() == []
    assert len(_fixes(kit)) == 1
    assert kit.svc.duplicates_total == 1


def test_owntracks_without_accuracy_gets_the_default_not_zero(kit: Kit) -> None:
    _, token = kit.device("alice-phone", "A7")
    r = _post(kit, token, {"_type": "location", "lat": 51.5, "lon": -0.12, "tst": 1893484801})
    assert r.status_code == 200
    assert _fixes(kit)[0]["accuracy"] == FALLBACK_ACCURACY_M


@pytest.mark.parametrize("payload", [
    {"_type": "transition", "event": "enter", "desc": "Main gate", "tst": 1893484800},
    {"_type": "waypoint", "desc": "Main gate", "lat": 51.5, "lon": -0.12, "rad": 30, "tst": 1},
    {"_type": "lwt", "tst": 1893484800},
    {"_type": "status", "android": {}},
    # Positions that cannot be used: still 200, so the phone's queue moves on.
    {"_type": "location", "lat": 95.0, "lon": -0.12, "tst": 1893484800},
    {"_type": "location", "lat": 51.5, "lon": -0.12, "tst": 1893484800 + 86400},
    {"_type": "location", "lat": "51.5", "lon": -0.12, "tst": 1893484800},
    {"_type": "location", "lon": -0.12, "tst": 1893484800},
])
def test_owntracks_other_types_and_unusable_positions_do_not_stall_the_phone(
    kit: Kit, payload: dict[str, Any]
) -> None:
    _, token = kit.device("alice-phone", "A7")
    r = _post(kit, token, payload)
    assert r.status_code == 200, r.text
    assert r.json() == []
    assert _fixes(kit) == []


def test_owntracks_refuses_wrong_credentials_and_non_owntracks_bodies(kit: Kit) -> None:
    _, token = kit.device("alice-phone", "A7")
    loc = {"_type": "location", "lat": 51.5, "lon": -0.12, "tst": 1893484800}
    r = _post(kit, "cwd_not-a-token", loc)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    r = kit.client.post("/owntracks", json=loc, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert kit.client.post("/owntracks", json=loc).status_code == 401
    bad = kit.client.post("/owntracks", json=loc, headers={"Authorization": "Basic ***"})
    assert bad.status_code == 401
    assert _post(kit, token, b"{not json").status_code == 400
    r = _post(kit, token, {"lat": 51.5})
    assert r.status_code == 400 and "_type" in r.text
    assert _fixes(kit) == []
    kit.svc.store.deactivate_device("alice-phone")
    assert _post(kit, token, loc).status_code == 401


def test_export_api_tracks_lapses_alerts(kit: Kit) -> None:
    _, token = kit.device("alice-phone", "A7")
    sup = kit.user("sam", "supervisor")
    for i in range(3):
        _post(kit, token, {"_type": "location", "lat": 51.5 + i * 1e-5, "lon": -0.12,
                           "tst": 1893484800 + i, "acc": 5})
    for _ in range(4):  # nobody on duty at the gate: a lapse, alerted after its 10 s grace
        kit.advance(15)
    assert kit.svc.book.alerts(), "the scenario must raise an alert"
    since, until = "2030-01-01T07:59:00Z", "2030-01-01T08:01:00Z"
    r = kit.request(sup, "GET", "/api/v1/export", params={"since": since, "until": until,
                                                           "format": "geojson"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["coverwatch"]["times"] == "UTC"
    track = next(f for f in body["features"] if f["properties"]["kind"] == "track")
    kinds = [f["properties"]["kind"] for f in body["features"]]
    assert "lapse" in kinds and "alert" in kinds
    alert = next(f for f in body["features"] if f["properties"]["kind"] == "alert")
    assert alert["geometry"] == {"type": "Point", "coordinates": [-0.12, 51.5]}
    assert alert["properties"]["alert_at"].endswith("Z")
    assert track["properties"]["officer"] == "A7" and track["properties"]["fixes"] == 3
    assert track["geometry"]["coordinates"][0] == pytest.approx([-0.12, 51.5])
    r = kit.request(sup, "GET", "/api/v1/export", params={"since": since, "until": until,
                                                           "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["type"] for row in rows].count("fix") == 3
    assert {"lapse", "alert"} <= {row["type"] for row in rows}
    assert rows[0]["t_utc"] == "2030-01-01T08:00:00Z"
    r = kit.request(sup, "GET", "/api/v1/export", params={"since": since, "until": until,
                                                           "format": "gpx"})
    assert r.status_code == 200 and "<trk>" in r.text and "<name>A7</name>" in r.text
    for params, field in [({"since": since, "until": until, "format": "kml"}, "format"),
                          ({"since": "yesterday", "until": until}, "since/until"),
                          ({"since": until, "until": since}, "until")]:
        r = kit.request(sup, "GET", "/api/v1/export", params=params)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field
    # An officer may not export everyone's tracks.
    officer = kit.user("olly", "officer")
    assert kit.request(officer, "GET", "/api/v1/export",
                       params={"since": since, "until": until}).status_code == 403


_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(), st.text(max_size=10))
_location = st.dictionaries(
    st.sampled_from(["_type", "lat", "lon", "tst", "acc", "batt", "tid", "vel", "cog", "alt",
                     "topic", "inregions"]),
    st.one_of(_scalar, st.sampled_from(["location", "transition", 51.5, -0.12, 1893484800]),
              st.lists(_scalar, max_size=3)), max_size=8)
_any = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10)


def test_random_owntracks_bodies_never_cause_a_server_error(kit: Kit) -> None:
    _, token = kit.device("alice-phone", "A7")

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(body=st.one_of(_location, st.lists(_location, max_size=3), _any))
    def check(body: Any) -> None:
        # The standard library writes what orjson refuses: huge integers, NaN, Infinity.
        r = _post(kit, token, json.dumps(body).encode())
        assert r.status_code in (200, 400), (body, r.status_code, r.text)
        if r.status_code == 200:
            assert r.json() == []

    check()


def test_owntracks_empty_body_is_200_and_locations_keep_their_device_report(kit: Kit) -> None:
    # The booklet allows zero-length payloads; the Android app retries any non-2xx.
    _, token = kit.device("alice-phone", "A7")
    r = _post(kit, token, b"")
    assert r.status_code == 200 and r.json() == []
    payload = json.loads(SAMPLE.read_text())
    assert _post(kit, token, payload).status_code == 200
    report = kit.svc.store.last_device_reports()["alice-phone"]
    assert (report["battery"], report["charging"], report["used"]) == (87.0, False, True)
    assert {k: report["raw"][k] for k in ("tid", "conn", "vac")} == {
        "tid": "A7", "conn": "w", "vac": 3}
    assert _fixes(kit)[0]["accuracy_source"] == "reported"
