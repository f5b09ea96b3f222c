"""Phones and trackers as they really behave, against a running server (uvicorn).

Each request shape Traccar Client 8/9/10, the legacy iOS client and OsmAnd send
is posted over real HTTP: query, form POST with every parameter in the URL and
an empty body, Traccar Client 9 JSON with extras, Traccar Client 10 form with
an alarm, battery fields, a heartbeat with no position, hdop only, millisecond
timestamps and no timestamp. Alarms raise their alert before the reply.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coverwatch.domain.time import US_PER_S, format_time
from serverkit import (
    FakeClock,
    LiveServer,
    base_settings,
    live_server,
    wait_until,
    write_site,
)

ESCALATION = """escalation:
  default:
    - after_s: 0
      notify: [supervisor]
    - after_s: 300
      notify: [duty-inspector]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    site = write_site(tmp_path, extra=ESCALATION)
    clock = FakeClock()
    with live_server(base_settings(site, tmp_path / "data"), clock) as srv:
        yield srv


def _device(srv: LiveServer, name: str = "phone-a1", officer: str = "A1") -> str:
    _, token = srv.svc.store.create_device(name, officer)
    return token


def _events(srv: LiveServer) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = srv.svc.store.events_since(0, limit=1000)
    return rows


def _now_s(srv: LiveServer) -> int:
    return srv.clock() // US_PER_S


def _officer(srv: LiveServer, officer: str) -> dict[str, Any]:
    _, token = srv.svc.store.create_api_token(f"reader-{officer}-{len(_events(srv))}",
                                              ["supervisor"])
    r = httpx.get(f"{srv.url}/api/v1/officers", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    (found,) = [o for o in r.json()["officers"] if o["officer"] == officer]
    return dict(found)


def test_query_get_with_accuracy(server: LiveServer) -> None:
    token = _device(server)
    r = httpx.get(f"{server.url}/osmand", params={
        "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(_now_s(server)),
        "accuracy": "6.5"})
    assert r.status_code == 200, r.text
    (reading,) = r.json()["readings"]
    assert reading["used_as_fix"] and reading["accuracy_source"] == "reported"
    (fix,) = _events(server)
    assert (fix["accuracy"], fix["accuracy_source"], fix["t_us"]) == (
        6.5, "reported", _now_s(server) * US_PER_S)


def test_form_post_with_parameters_in_the_url_and_an_empty_body(server: LiveServer) -> None:
    # Traccar Client Android 8.x: POST, every parameter in the URL, nothing in the body.
    token = _device(server)
    query = (f"id={token}&lat=51.5&lon=-0.12&timestamp={_now_s(server)}&speed=0&bearing=0"
             "&altitude=10&accuracy=4&batt=77")
    r = httpx.post(f"{server.url}/osmand?{query}", content=b"",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    (fix,) = _events(server)
    assert fix["accuracy"] == 4.0
    assert _officer(server, "A1")["battery"] == 77.0


def _device_alerts(server: LiveServer) -> list[dict[str, Any]]:
    """Stored alerts but the server's own (a test site's escalation reaching nobody
    with a contact raises a ``system`` alert at start)."""
    return [a for a in server.svc.store.load_alerts()
            if a["kind"] not in ("system", "notification-failure")]


def test_traccar_client_9_json_with_extras_sos(server: LiveServer) -> None:
    token = _device(server)
    body = {"device_id": token, "location": {
        "timestamp": format_time(server.clock()).replace("Z", ".250Z"),
        "coords": {"latitude": 51.5001, "longitude": -0.12, "accuracy": 8.0},
        "is_moving": False, "odometer": 0, "event": "motionchange",
        "battery": {"level": 0.42, "is_charging": True}, "activity": {"type": "still"},
        "extras": {"alarm": "sos"}}}
    r = httpx.post(f"{server.url}/osmand", json=body)
    assert r.status_code == 200, r.text
    (fix,) = _events(server)
    assert fix["t_us"] == server.clock() + 250_000
    # The alert is in the store before the reply, without any tick of the watermark.
    (alert,) = _device_alerts(server)
    assert (alert["kind"], alert["state"], alert["rule"]) == ("sos", "open", "officer:A1")
    details = alert["details"]
    assert details["officer"] == "A1" and details["alarm"] == "sos"
    assert details["event_time"] == format_time(server.clock() + 250_000)
    assert details["received"] == format_time(server.clock())
    assert details["position"]["y"] == pytest.approx(11.1, abs=0.2)
    assert details["battery"] == pytest.approx(42.0)
    # Every level of the policy at once: nobody waits on an SOS.
    def actions() -> list[str]:
        # The alert's own lifecycle (deliveries are audited beside it, under notification.*).
        return [e.action for e in server.svc.store.audit_entries(0, 100)
                if e.subject == f"alert:{alert['id']}" and e.action.startswith("alert.")]

    wait_until(lambda: len(actions()) == 3, what="both escalation levels")
    assert actions() == ["alert.raised", "alert.level-due.0", "alert.level-due.1"]
    # Re-sent (the reply was lost): one report, one alert.
    r = httpx.post(f"{server.url}/osmand", json=body)
    assert r.status_code == 200 and r.json()["duplicates"] == 1
    assert len(_device_alerts(server)) == 1


def test_traccar_client_10_form_with_alarm_and_battery(server: LiveServer) -> None:
    token = _device(server)
    r = httpx.post(f"{server.url}/osmand", data={
        "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(_now_s(server)),
        "accuracy": "12", "speed": "0", "bearing": "0", "altitude": "3", "batt": "15.5",
        "charge": "false", "alarm": "sos"})
    assert r.status_code == 200, r.text
    (alert,) = _device_alerts(server)
    assert alert["kind"] == "sos" and alert["details"]["position"]["accuracy_m"] == 12.0
    officer = _officer(server, "A1")
    assert officer["battery"] == 15.5
    (device,) = officer["device_reports"]
    assert device["charging"] is False and device["alarm"] == "sos"


def test_heartbeat_without_a_position_is_a_device_report(server: LiveServer) -> None:
    # Traccar Client 10 with no GPS: id, timestamp and battery only.
    token = _device(server)
    r = httpx.post(f"{server.url}/osmand", data={
        "id": token, "timestamp": str(_now_s(server)), "batt": "64", "charge": "true"})
    assert r.status_code == 200, r.text
    (reading,) = r.json()["readings"]
    assert reading["used_as_fix"] is False and "no position" in reading["reason"]
    assert _events(server) == []
    (report,) = server.svc.store.device_reports("phone-a1")
    assert (report["battery"], report["charging"], report["used"]) == (64.0, True, False)
    officer = _officer(server, "A1")
    assert officer["last_report"] == format_time(server.clock())
    assert officer["battery"] == 64.0
    assert officer["not_counting"] == "off duty"


def test_sos_with_no_position_still_raises_the_alert(server: LiveServer) -> None:
    token = _device(server)
    r = httpx.post(f"{server.url}/osmand", data={
        "id": token, "timestamp": str(_now_s(server)), "alarm": "sos", "valid": "false"})
    assert r.status_code == 200, r.text
    (alert,) = _device_alerts(server)
    assert alert["kind"] == "sos" and alert["details"]["position"] is None


def test_sos_after_a_fix_shows_the_last_known_position(server: LiveServer) -> None:
    token = _device(server)
    now = _now_s(server)
    httpx.get(f"{server.url}/osmand", params={
        "id": token, "lat": "51.5", "lon": "-0.1199", "timestamp": str(now - 20)})
    r = httpx.get(f"{server.url}/osmand", params={"id": token, "alarm": "sos",
                                                  "timestamp": str(now)})
    assert r.status_code == 200, r.text
    (alert,) = _device_alerts(server)
    position = alert["details"]["position"]
    assert position["x"] == pytest.approx(6.9, abs=0.2)
    assert position["time"] == format_time((now - 20) * US_PER_S)


def test_hdop_only_is_the_accuracy(server: LiveServer) -> None:
    # OsmAnd: .../osmand?id=..&lat={0}&lon={1}&timestamp={2}&hdop={3}
    token = _device(server)
    r = httpx.get(f"{server.url}/osmand", params={
        "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(_now_s(server) * 1000),
        "hdop": "17"})
    assert r.status_code == 200, r.text
    (fix,) = _events(server)
    assert (fix["accuracy"], fix["accuracy_source"]) == (17.0, "hdop")


def test_millisecond_timestamps(server: LiveServer) -> None:
    token = _device(server)
    ms = server.clock() // 1000 + 750
    r = httpx.get(f"{server.url}/osmand", params={
        "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(ms), "accuracy": "5"})
    assert r.status_code == 200, r.text
    (fix,) = _events(server)
    assert fix["t_us"] == ms * 1000


def test_no_timestamp_and_no_accuracy(server: LiveServer) -> None:
    # The legacy iOS client: a GET with no accuracy; here also no timestamp.
    token = _device(server)
    r = httpx.get(f"{server.url}/osmand", params={"id": token, "lat": "51.5", "lon": "-0.12"})
    assert r.status_code == 200, r.text
    (reading,) = r.json()["readings"]
    assert reading["time_source"] == "received"
    (fix,) = _events(server)
    assert fix["t_us"] == server.clock()
    assert fix["raw"]["time_source"] == "received"
    # Never 0: the site's default_accuracy_m (50 m unless the site says otherwise).
    assert (fix["accuracy"], fix["accuracy_source"]) == (50.0, "default")


def test_fall_and_other_alarms(server: LiveServer) -> None:
    token = _device(server)
    for alarm in ("fallDown", "lowBattery", "powerOff", "tampering"):
        r = httpx.post(f"{server.url}/osmand", data={
            "id": token, "timestamp": str(_now_s(server)), "alarm": alarm})
        assert r.status_code == 200, r.text
        server.clock.advance(1)
    (alert,) = _device_alerts(server)
    assert alert["kind"] == "fall"
    assert [r["alarm"] for r in server.svc.store.device_reports("phone-a1")] == [
        "tampering", "powerOff", "lowBattery", "fallDown"]
    assert _officer(server, "A1")["device_reports"][0]["alarm"] == "tampering"


def test_device_clock_far_ahead_is_kept_and_shown(server: LiveServer) -> None:
    token = _device(server)
    r = httpx.get(f"{server.url}/osmand", params={
        "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(_now_s(server) + 90)})
    assert r.status_code == 200, r.text
    assert "90 s ahead" in r.json()["readings"][0]["reason"]
    assert _events(server) == []
    assert _officer(server, "A1")["not_counting"] == "clock wrong"


def test_only_unauthenticated_or_malformed_requests_are_refused(server: LiveServer) -> None:
    token = _device(server)
    assert httpx.get(f"{server.url}/osmand", params={"lat": "1"}).status_code == 401
    assert httpx.get(f"{server.url}/osmand", params={"id": "cwd_nope"}).status_code == 401
    r = httpx.post(f"{server.url}/osmand", content=b"{not json",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = httpx.post(f"{server.url}/osmand", json={"device_id": token, "location": 5})
    assert r.status_code == 400


def test_batch_api_alarms_from_a_device_token(server: LiveServer) -> None:
    _, token = server.svc.store.create_device("radio-a1", "A1")
    headers = {"Authorization": f"Bearer {token}"}
    t = format_time(server.clock())
    r = httpx.post(f"{server.url}/api/v1/events", headers=headers, json=[
        {"t": t, "kind": "fix", "x": 1, "y": 2, "alarm": "sos"}])
    assert r.status_code == 200, r.text
    (fix,) = _events(server)
    assert (fix["accuracy"], fix["accuracy_source"]) == (50.0, "default")
    r = httpx.post(f"{server.url}/api/v1/events", headers=headers, json=[
        {"t": format_time(server.clock() + US_PER_S), "kind": "alarm", "alarm": "fallDown"}])
    assert r.status_code == 200, r.text
    kinds = sorted(a["kind"] for a in _device_alerts(server))
    assert kinds == ["fall", "sos"]
    r = httpx.post(f"{server.url}/api/v1/events", headers=headers, json=[
        {"t": t, "kind": "alarm", "alarm": 5}])
    assert r.status_code == 422


def test_duty_from_the_officer_page_and_the_device(server: LiveServer) -> None:
    store = server.svc.store
    store.create_user("A1", "a long enough password", ["officer"])
    user = store.get_user("A1")
    assert user is not None
    session = store.create_session(user.id, now_us=server.clock(), ttl_us=3600 * US_PER_S)
    headers = {"Cookie": f"cw_session={session.token}", "X-CSRF-Token": session.csrf_token}
    r = httpx.post(f"{server.url}/api/v1/me/duty", headers=headers, json={"on": True})
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "session"
    _, token = store.create_device("phone-a1", "A1")
    r = httpx.post(f"{server.url}/api/v1/me/duty", json={"on": False},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    duty = [(e["on"], e["source"], e["device"]) for e in _events(server)]
    assert duty == [(True, "session", None), (False, "device", "phone-a1")]
    r = httpx.post(f"{server.url}/api/v1/me/duty", headers=headers, json={"on": "maybe"})
    assert r.status_code == 422


def test_a_device_reporting_in_a_rostered_shift_puts_the_officer_on_duty(
    tmp_path: Path,
) -> None:
    site = write_site(tmp_path, extra="duty_from_devices: true\n")
    clock = FakeClock()
    with live_server(base_settings(site, tmp_path / "data"), clock) as srv:
        _, sup = srv.svc.store.create_api_token("sup", ["supervisor"])
        r = httpx.post(f"{srv.url}/api/v1/roster/shifts",
                       headers={"Authorization": f"Bearer {sup}"},
                       json={"officer": "A1", "post": "gate", "start": format_time(clock()),
                             "end": format_time(clock() + 3600 * US_PER_S)})
        assert r.status_code in (200, 201), r.text
        token = _device(srv)
        clock.advance(60)
        r = httpx.get(f"{srv.url}/osmand", params={
            "id": token, "lat": "51.5", "lon": "-0.12", "accuracy": "5"})
        assert r.status_code == 200, r.text
        duty = wait_until(lambda: [e for e in _events(srv) if e["kind"] == "duty"],
                          what="a duty event")
        assert [(e["on"], e["source"], e["t_us"]) for e in duty] == [
            (True, "device-in-shift", clock())]


def test_a_silent_device_of_a_rostered_officer_raises_and_resolves_an_alert(
    tmp_path: Path,
) -> None:
    from serverkit import running_server

    site = write_site(tmp_path, extra="silent_after_s: 60\n")
    with running_server(base_settings(site, tmp_path / "data")) as kit:
        sup = kit.api_token("sup", "supervisor")
        start = kit.clock()
        r = kit.request(sup, "POST", "/api/v1/roster/shifts", json={
            "officer": "A1", "post": "gate", "start": format_time(start),
            "end": format_time(start + 3600 * US_PER_S)})
        assert r.status_code in (200, 201), r.text
        _, token = kit.device("phone-a1", "A1")
        kit.advance(30)
        assert kit.svc.book.alerts() == []
        # The phone never started: silent 60 s after the shift began.
        kit.advance(31)
        (alert,) = kit.svc.book.alerts()
        assert (alert.kind, alert.post, alert.rule, alert.lapse_start) == (
            "device-silent", "gate", "device:A1", start)
        assert alert.details is not None and alert.details["position"] is None
        # It reports: resolved.
        r = kit.request(None, "GET", "/osmand", params={
            "id": token, "lat": "51.5", "lon": "-0.12", "batt": "40"})
        assert r.status_code == 200, r.text
        phone, _ = kit.device("radio-a1", "A1")
        assert kit.request(phone, "POST", "/api/v1/me/duty", json={"on": True}).status_code \
            == 200
        kit.tick()
        assert kit.svc.book.get(alert.id).state.value == "resolved"
        # Silent again for longer than 60 s: a new alert, with the last position and battery.
        kit.advance(61)
        fresh = [a for a in kit.svc.book.alerts()
                 if a.state.value == "open" and a.kind == "device-silent"]
        assert len(fresh) == 1 and fresh[0].details is not None
        assert fresh[0].details["battery"] == 40.0
        assert fresh[0].details["position"]["accuracy_m"] == 50.0


def test_enrolment_link_qr_and_rotation(tmp_path: Path) -> None:
    from urllib.parse import parse_qs, urlsplit

    from serverkit import running_server

    site = write_site(tmp_path)
    settings = base_settings(site, tmp_path / "data", public_url="https://cover.example.org/")
    with running_server(settings) as kit:
        admin = kit.user("ada", "admin")
        r = kit.request(admin, "POST", "/api/v1/devices", json={"name": "p1", "officer": "A1"})
        assert r.status_code == 201, r.text
        body = r.json()
        link = urlsplit(body["enrolment"]["traccar_link"])
        assert (link.scheme, link.netloc, link.path) == ("https", "cover.example.org", "/osmand")
        query = {k: v[0] for k, v in parse_qs(link.query).items()}
        assert query == {"id": body["token"], "interval": "5", "distance": "0",
                         "stop_detection": "false", "accuracy": "high", "buffer": "true"}
        assert body["enrolment"]["qr_svg"].lstrip().startswith("<?xml")
        assert "hdop={3}" in body["enrolment"]["osmand_url"]
        # The link's id is the device's credential on /osmand.
        r = kit.request(None, "GET", "/osmand", params={"id": query["id"], "lat": "51.5",
                                                       "lon": "-0.12"})
        assert r.status_code == 200, r.text
        r = kit.request(admin, "POST", "/api/v1/devices/p1/rotate")
        assert r.status_code == 200, r.text
        assert r.json()["token"] != body["token"]
        r = kit.request(None, "GET", "/osmand", params={"id": body["token"], "lat": "51.5"})
        assert r.status_code == 401
        assert kit.request(admin, "POST", "/api/v1/devices/nope/rotate").status_code == 404


def test_client_sdk_upload_json_array_is_stored_not_401(server: LiveServer) -> None:
    # tests/unit/samples/clients/client-sdk-upload-json.json: each reading carries its id.
    token = _device(server)
    now = _now_s(server)
    body = [{"id": token, "lat": 51.5, "lon": -0.12, "timestamp": now - 10, "accuracy": 8,
             "batt": 87},
            {"id": token, "lat": 51.50001, "lon": -0.12, "timestamp": now, "accuracy": 0}]
    r = httpx.post(f"{server.url}/osmand", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2
    assert [(f["accuracy"], f["accuracy_source"]) for f in _events(server)] == [
        (8.0, "reported"), (50.0, "default")]


def test_a_mock_location_is_a_report_and_the_officer_shows_why(server: LiveServer) -> None:
    token = _device(server)
    r = httpx.get(f"{server.url}/osmand", params={
        "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(_now_s(server)),
        "accuracy": "5", "mock": "true"})
    assert r.status_code == 200, r.text
    (reading,) = r.json()["readings"]
    assert not reading["used_as_fix"] and reading["reason"].startswith("mock location")
    assert _events(server) == []
    officer = _officer(server, "A1")
    assert officer["device_reports"][0]["reason"].startswith("mock location")
    assert officer["not_counting"] == "mock location"
