"""The live server over HTTP: ingestion (batch, NDJSON, OsmAnd), validation,
idempotence, late and future events, alerts, the SSE feed, escalation and audit.

Time is a fake clock the tests move; a ticker step is run explicitly
(``kit.tick()``), so nothing here waits on wall-clock time.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.notify.notifier import SIGNATURE_HEADER, verify_signature
from serverkit import (
    REPO,
    YARD,
    Caller,
    FakeClock,
    Kit,
    base_settings,
    live_server,
    running_server,
    wait_until,
    write_site,
)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    site = write_site(tmp_path)
    with running_server(base_settings(site, tmp_path / "data")) as k:
        yield k


def _stored(kit: Kit) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = kit.svc.store.events_since(0, limit=100_000, include_late=True)
    return rows


def _fix(kit: Kit, officer: str, x: float, y: float, offset_s: float = 0.0,
         **extra: Any) -> dict[str, Any]:
    return {"t": kit.clock.iso(offset_s), "kind": "fix", "officer": officer, "x": x, "y": y,
            **extra}


# -- batch ingestion ------------------------------------------------------------


def test_batch_array_object_and_ndjson(kit: Kit) -> None:
    svc = kit.api_token("gateway", "ingest")
    r = kit.post_events(svc, [_fix(kit, "A1", 0, 0), _fix(kit, "A2", 1, 1)])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0, "late": 0}
    r = kit.post_events(svc, {"events": [_fix(kit, "A1", 2, 0, 1.0)]})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    lines = b"\n".join(orjson.dumps(e) for e in [_fix(kit, "A1", 3, 0, 2.0),
                                                   _fix(kit, "A2", 3, 1, 2.0)]) + b"\n"
    r = kit.request(svc, "POST", "/api/v1/events", content=lines,
                    headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2
    rows = _stored(kit)
    assert [(e["officer"], e["x"]) for e in rows] == [
        ("A1", 0.0), ("A2", 1.0), ("A1", 2.0), ("A1", 3.0), ("A2", 3.0)]
    assert {e["source"] for e in rows} == {"http"}


BAD_EVENTS = [
    ({"kind": "fix", "officer": "A1", "x": "far", "y": 0}, "x"),
    ({"kind": "teleport", "officer": "A1"}, "kind"),
    ({"kind": "gate", "post": "nowhere", "open": True}, "post"),
    ({"kind": "flag", "flag": "no-such-flag", "on": True}, "flag"),
    ({"kind": "fix", "x": 0, "y": 0}, "officer"),
    ({"kind": "fix", "officer": "A1", "x": 0, "y": 0, "t": "2030-01-01T08:00:00"}, "t"),
    ({"kind": "fix", "officer": "A1", "x": 0, "y": 0, "accuracy_m": -1}, "accuracy_m"),
    ({"kind": "duty", "officer": "A1", "on": "yes"}, "on"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_EVENTS)
def test_bad_event_names_index_and_field_and_stores_nothing(
    kit: Kit, bad: dict[str, Any], field: str
) -> None:
    svc = kit.api_token("gateway", "ingest")
    bad = {"t": kit.clock.iso(), **bad}
    events = [_fix(kit, "A1", 0, 0), _fix(kit, "A2", 0, 0), bad, _fix(kit, "A3", 0, 0)]
    r = kit.post_events(svc, events)
    assert r.status_code == 422, r.text
    problems = r.json()["errors"]
    assert [(p["index"], p["field"]) for p in problems] == [(2, field)]
    assert problems[0]["message"]
    assert _stored(kit) == []


def test_time_too_far_ahead_is_refused(kit: Kit) -> None:
    svc = kit.api_token("gateway", "ingest")
    ahead = kit.settings.max_future_s + 5
    r = kit.post_events(svc, [_fix(kit, "A1", 0, 0), _fix(kit, "A1", 0, 0, ahead)])
    assert r.status_code == 422
    assert [(p["index"], p["field"]) for p in r.json()["errors"]] == [(1, "t")]
    assert "ahead of the server clock" in r.json()["errors"][0]["message"]
    assert _stored(kit) == []
    # Just inside the limit is fine.
    r = kit.post_events(svc, [_fix(kit, "A1", 0, 0, kit.settings.max_future_s - 1)])
    assert r.status_code == 200


@pytest.mark.parametrize("body", [b"", b"{", b"null", b"42", b'"x"', b'{"events": 3}',
                                  b"[1, 2]", b'{"events": [null]}', b"\xff\xfe"])
def test_malformed_bodies_are_client_errors(kit: Kit, body: bytes) -> None:
    svc = kit.api_token("gateway", "ingest")
    r = kit.request(svc, "POST", "/api/v1/events", content=body,
                    headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert _stored(kit) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)
_value = st.one_of(
    _json, st.sampled_from(["fix", "duty", "gate", "flag", "gate", "open-hours", "A1",
                            "2030-01-01T08:00:00Z", "2030-01-01T08:00:00", "1e400", ""]),
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
)
_event = st.dictionaries(
    st.sampled_from(["t", "kind", "officer", "x", "y", "lat", "lon", "accuracy_m", "post",
                     "flag", "on", "open", "capabilities"]),
    _value, max_size=8,
)
_body = st.one_of(_json, st.lists(_event, max_size=5), st.builds(lambda e: {"events": e},
                                                                 st.lists(_event, max_size=5)))


_osmand_query = st.dictionaries(
    st.sampled_from(["lat", "lon", "latitude", "longitude", "location", "timestamp",
                     "accuracy", "valid", "speed"]),
    st.one_of(st.text(max_size=12), st.sampled_from(["51.5", "-0.12", "51.5,-0.12", "1e999",
                                                     "nan", "1893456000", "1893456000000",
                                                     "2030-01-01T08:00:00Z", ",", "true"])),
    max_size=6,
)


def test_random_bodies_never_cause_a_server_error(kit: Kit) -> None:
    svc = kit.api_token("gateway", "ingest")
    device, token = kit.device("phone", "A1")

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(body=_body, as_device=st.booleans(), osmand=st.booleans(), query=_osmand_query)
    def check(body: Any, as_device: bool, osmand: bool, query: dict[str, str]) -> None:
        # The standard library writes what orjson refuses: huge integers, NaN, Infinity.
        content = json.dumps(body).encode()
        r = kit.request(None, "GET", "/osmand", params={**query, "id": token})
        assert r.status_code < 500, (query, r.status_code, r.text)
        if osmand:
            r = kit.request(None, "POST", "/osmand", params={"id": token}, content=content,
                            headers={"Content-Type": "application/json"})
        else:
            r = kit.request(device if as_device else svc, "POST", "/api/v1/events",
                            content=content, headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (body, r.status_code, r.text)

    check()


def test_resent_history_is_counted_not_stored_twice(kit: Kit) -> None:
    svc = kit.api_token("gateway", "ingest")
    history = [_fix(kit, "A1", 0, 0), _fix(kit, "A1", 1, 0, 1.0),
               {"t": kit.clock.iso(), "kind": "duty", "officer": "A1", "on": True}]
    assert kit.post_events(svc, history).json() == {"accepted": 3, "duplicates": 0, "late": 0}
    again = [*history, _fix(kit, "A1", 2, 0, 2.0)]
    assert kit.post_events(svc, again).json() == {"accepted": 1, "duplicates": 3, "late": 0}
    # A different fix of the same officer at the same time is another event (a radio
    # and a phone): stored, and applied after the first in commit order.
    moved = [_fix(kit, "A1", 50, 50, 1.0)]
    assert kit.post_events(svc, moved).json() == {"accepted": 1, "duplicates": 0, "late": 0}
    assert kit.post_events(svc, moved).json()["duplicates"] == 1
    assert len(_stored(kit)) == 5
    assert kit.svc.duplicates_total == 4


def test_late_event_is_stored_flagged_and_not_fed_live(kit: Kit) -> None:
    svc = kit.api_token("gateway", "ingest")
    assert kit.post_events(svc, [_fix(kit, "A1", 0, 0)]).status_code == 200
    kit.advance(10)  # the horizon is now 8 s past the first fix
    horizon = kit.svc.live.horizon
    assert horizon == kit.clock() - round(kit.settings.lateness_s * US_PER_S)
    late = _fix(kit, "A2", 0, 0, -5.0)  # 5 s ago, 3 s behind the horizon
    on_time = _fix(kit, "A3", 0, 0, -1.0)
    r = kit.post_events(svc, [late, on_time])
    assert r.json() == {"accepted": 2, "duplicates": 0, "late": 1}
    rows = {e["officer"]: e for e in _stored(kit)}
    assert rows["A2"]["late"] and not rows["A3"]["late"]
    assert kit.svc.late_total == 1
    kit.advance(5)
    seen = {o.officer for o in kit.svc.live.officers()}
    assert "A3" in seen and "A2" not in seen
    # The late fix is kept for reports: it is in the store with the rest.
    assert [e["officer"] for e in kit.svc.store.events_since(0, include_late=False)] == [
        "A1", "A3"]


def test_device_sends_only_for_its_own_officer(kit: Kit) -> None:
    device, _ = kit.device("phone-a1", "A1")
    r = kit.post_events(device, [{"t": kit.clock.iso(), "kind": "fix", "x": 0, "y": 0}])
    assert r.status_code == 200, r.text
    r = kit.post_events(device, [{"t": kit.clock.iso(), "kind": "duty", "officer": "A1",
                                  "on": True}])
    assert r.status_code == 200, r.text
    for bad, field in [(_fix(kit, "B7", 0, 0, 1.0), "officer"),
                       ({"t": kit.clock.iso(), "kind": "gate", "post": "gate", "open": True},
                        "kind"),
                       ({"t": kit.clock.iso(), "kind": "flag", "flag": "open-hours",
                         "on": False}, "kind")]:
        r = kit.post_events(device, [bad])
        assert r.status_code in (403, 422), r.text
        assert r.json()["errors"][0]["field"] == field
    rows = _stored(kit)
    assert [(e["kind"], e["officer"], e["device"]) for e in rows] == [
        ("fix", "A1", "phone-a1"), ("duty", "A1", "phone-a1")]


def test_revoked_device_is_refused(kit: Kit) -> None:
    device, _ = kit.device("phone-a1", "A1")
    kit.svc.store.deactivate_device("phone-a1")
    r = kit.post_events(device, [_fix(kit, "A1", 0, 0)])
    assert r.status_code == 401


# -- OsmAnd / Traccar Client ------------------------------------------------------


def test_osmand_query_form_and_json(kit: Kit) -> None:
    _, token = kit.device("phone-a1", "A1")
    epoch_s = kit.clock() // US_PER_S
    r = kit.request(None, "GET", "/osmand", params={
        "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(epoch_s),
        "accuracy": "5"})
    assert r.status_code == 200, r.text
    # Form POST, timestamp in milliseconds, location=lat,lon.
    r = kit.request(None, "POST", "/osmand", data={
        "id": token, "location": "51.5001,-0.12", "timestamp": str((epoch_s + 1) * 1000)})
    assert r.status_code == 200, r.text
    # Traccar Client 9: a JSON body with the device id inside.
    body = {"device_id": token, "location": {
        "timestamp": kit.clock.iso(2.0), "coords": {"latitude": 51.5, "longitude": -0.1199,
                                                    "accuracy": 3.0}}}
    r = kit.request(None, "POST", "/osmand", json=body)
    assert r.status_code == 200, r.text
    rows = _stored(kit)
    assert [e["t_us"] for e in rows] == [kit.clock() + i * US_PER_S for i in range(3)]
    assert all(e["officer"] == "A1" and e["source"] == "osmand" for e in rows)
    assert rows[0]["x"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["y"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["accuracy"] == 5.0
    assert rows[1]["y"] == pytest.approx(11.1, abs=0.2)  # 0.0001° of latitude north
    assert rows[2]["x"] == pytest.approx(6.9, abs=0.2)  # 0.0001° of longitude east at 51.5°


def test_osmand_refuses_unknown_devices_and_keeps_unusable_readings(kit: Kit) -> None:
    params = {"lat": "51.5", "lon": "-0.12", "timestamp": str(kit.clock() // US_PER_S)}
    assert kit.request(None, "GET", "/osmand", params=params).status_code == 401
    r = kit.request(None, "GET", "/osmand", params={**params, "id": "cwd_not-a-device"})
    assert r.status_code == 401
    _, token = kit.device("phone-a1", "A1")
    # What the phone measured never stalls it: 200, kept as a device report with the reason.
    for bad, why in (({"lat": "north"}, "lat is not a number"), ({"lat": "95"}, "latitude"),
                     ({"valid": "false"}, "valid=false"),
                     ({"timestamp": str(kit.clock() // US_PER_S + 3600)}, "ahead"),
                     ({"timestamp": "86400"}, "implausible")):
        r = kit.request(None, "GET", "/osmand", params={**params, "id": token, **bad})
        assert r.status_code == 200, (bad, r.text)
        (reading,) = r.json()["readings"]
        assert reading["used_as_fix"] is False and why in reading["reason"], (bad, reading)
    assert _stored(kit) == []
    reports = kit.svc.store.device_reports("phone-a1")
    assert len(reports) == 5 and not any(rep["used"] for rep in reports)


# -- alerts -------------------------------------------------------------------------


def _start_cover(kit: Kit, ingest: Caller) -> None:
    """A1 on duty at the gate from now; returns once the horizon has passed it."""
    r = kit.post_events(ingest, [
        {"t": kit.clock.iso(), "kind": "duty", "officer": "A1", "on": True},
        _fix(kit, "A1", 0, 0)])
    assert r.status_code == 200, r.text


def _lapse(kit: Kit, ingest: Caller) -> int:
    """A1 walks away from the gate now; returns the lapse start."""
    start: int = kit.clock()
    assert kit.post_events(ingest, [_fix(kit, "A1", 200, 0)]).status_code == 200
    return start


def _alerts(kit: Kit, who: Caller) -> list[dict[str, Any]]:
    r = kit.request(who, "GET", "/api/v1/alerts")
    assert r.status_code == 200, r.text
    alerts: list[dict[str, Any]] = r.json()["alerts"]
    return alerts


def test_alert_lifecycle_over_http(kit: Kit) -> None:
    ingest = kit.api_token("gateway", "ingest")
    sup = kit.user("sam", "supervisor")
    auditor = kit.user("ada", "auditor")
    _start_cover(kit, ingest)
    kit.advance(5)
    start = _lapse(kit, ingest)
    kit.advance(5)
    assert _alerts(kit, sup) == []  # within the 10 s grace
    r = kit.request(sup, "GET", "/api/v1/cover")
    assert [s["state"] for s in r.json()["rules"]] == ["grace"]
    kit.advance(10)
    (alert,) = _alerts(kit, sup)
    assert (alert["post"], alert["rule"], alert["state"]) == ("gate", "cover", "open")
    assert alert["lapse_start"] == start
    assert alert["alert_at"] == start + 10 * US_PER_S
    aid = alert["id"]
    # Only resolved alerts can be closed; unknown alerts are 404.
    assert kit.request(sup, "POST", f"/api/v1/alerts/{aid}/close", json={}).status_code == 409
    assert kit.request(sup, "POST", "/api/v1/alerts/lapse-nope/acknowledge",
                       json={}).status_code == 404
    ack_at = kit.clock()
    r = kit.request(sup, "POST", f"/api/v1/alerts/{aid}/acknowledge",
                    json={"note": "sending B2 to the gate"})
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["state"] == "acknowledged"
    assert (acked["acknowledged_by"], acked["acknowledged_at"], acked["acknowledgement_note"]) \
        == ("sam", ack_at, "sending B2 to the gate")
    assert kit.request(sup, "POST", f"/api/v1/alerts/{aid}/acknowledge",
                       json={"note": "again"}).status_code == 409
    # Cover returns: the alert resolves at the event time of the returning fix.
    back = kit.clock()
    assert kit.post_events(ingest, [_fix(kit, "A1", 1, 1)]).status_code == 200
    kit.advance(5)
    (alert,) = _alerts(kit, sup)
    assert alert["state"] == "resolved"
    assert alert["resolved_at"] == back
    r = kit.request(sup, "POST", f"/api/v1/alerts/{aid}/close", json={"note": "B2 relieved A1"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["closed_by"]) == ("closed", "sam")
    assert kit.request(sup, "POST", f"/api/v1/alerts/{aid}/close", json={}).status_code == 409
    # The stored record agrees, and the audit log tells the story and verifies.
    stored = kit.svc.store.get_alert_record(aid)
    assert stored is not None and stored["state"] == "closed"
    entries = kit.request(auditor, "GET", "/api/v1/audit", params={"limit": 1000}).json()
    mine = [(e["actor"], e["action"]) for e in entries["entries"]
            if e["subject"] == f"alert:{aid}"]
    assert mine == [("engine", "alert.raised"), ("sam", "alert.acknowledged"),
                    ("engine", "alert.resolved"), ("sam", "alert.closed")]
    ack_entry = next(e for e in entries["entries"] if e["action"] == "alert.acknowledged")
    assert "sending B2 to the gate" in orjson.dumps(ack_entry).decode()
    verify = kit.request(auditor, "GET", "/api/v1/audit/verify").json()
    assert verify["ok"] is True and verify["first_bad_id"] is None
    # The lapse list agrees with the alert.
    lapses = kit.request(sup, "GET", "/api/v1/lapses").json()["lapses"]
    assert [(lp["post"], lp["rule"], parse_time(lp["start"]), parse_time(lp["end"]))
            for lp in lapses] == [("gate", "cover", start, back)]


def test_silent_device_goes_stale_without_new_events(kit: Kit) -> None:
    ingest = kit.api_token("gateway", "ingest")
    sup = kit.user("sam", "supervisor")
    _start_cover(kit, ingest)
    kit.advance(5)
    (officer,) = kit.request(sup, "GET", "/api/v1/officers").json()["officers"]
    # The post's name beside its id (/duty showed only ids); the test site's post has none.
    assert not officer["stale"] and officer["counts_for"] == [
        {"post": "gate", "post_name": "gate", "rule": "cover"}]
    # No event arrives; only time passes (stale_after_s is 30, grace 10).
    for _ in range(12):
        kit.advance(5)
    (officer,) = kit.request(sup, "GET", "/api/v1/officers").json()["officers"]
    assert officer["stale"] and officer["counts_for"] == []
    (alert,) = _alerts(kit, sup)
    last_fix = kit.svc.live.officers()[0].last_fix_us
    assert last_fix is not None
    assert alert["lapse_start"] == last_fix + 30 * US_PER_S


def test_alert_appears_on_the_sse_feed(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    clock = FakeClock()
    settings = base_settings(site, tmp_path / "data", tick_s=0.02)
    with live_server(settings, clock) as srv:
        store = srv.svc.store
        user = store.create_user("sam", "correct horse battery", ["supervisor"])
        session = store.create_session(user.id, now_us=clock(), ttl_us=3600 * US_PER_S)
        _, token = store.create_api_token("gateway", ["ingest"])
        lines: list[str] = []
        stop = threading.Event()

        def read() -> None:
            with httpx.Client(base_url=srv.url, timeout=60) as client, client.stream(
                "GET", "/api/v1/feed", cookies={"cw_session": session.token}
            ) as response:
                assert response.status_code == 200
                # The server closes the stream when the test shuts it down.
                with contextlib.suppress(httpx.HTTPError):
                    for line in response.iter_lines():
                        lines.append(line)
                        if stop.is_set():
                            return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_until(lambda: srv.svc.feed.subscribers == 1, what="the feed subscriber")
        headers = {"Authorization": f"Bearer {token}"}

        def post(events: list[dict[str, Any]]) -> None:
            r = httpx.post(f"{srv.url}/api/v1/events", json=events, headers=headers)
            assert r.status_code == 200, r.text

        post([{"t": clock.iso(), "kind": "duty", "officer": "A1", "on": True},
              {"t": clock.iso(), "kind": "fix", "officer": "A1", "x": 0, "y": 0}])
        clock.advance(5)
        post([{"t": clock.iso(), "kind": "fix", "officer": "A1", "x": 200, "y": 0}])
        clock.advance(20)  # the ticker (every 20 ms) passes the 10 s grace on its own

        def alert_line() -> dict[str, Any] | None:
            for line in list(lines):
                if line.startswith("data: "):
                    msg = orjson.loads(line[6:])
                    if msg.get("type") == "alert-state" and msg["alert"]["state"] == "open":
                        return dict(msg["alert"])
            return None

        alert = wait_until(alert_line, what="the alert on the SSE feed")
        assert (alert["post"], alert["rule"]) == ("gate", "cover")
        assert alert["id"] in {a.id for a in srv.svc.book.alerts()}
        stop.set()
        clock.advance(1)
        post([{"t": clock.iso(), "kind": "fix", "officer": "A1", "x": 0, "y": 0}])
        reader.join(10)


# -- escalation ---------------------------------------------------------------------


class _Hooks(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append((self.path, body, self.headers.get(SIGNATURE_HEADER, "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[tuple[str, bytes, str]]]]:
    received: list[tuple[str, bytes, str]] = []
    handler = type("Hooks", (_Hooks,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"signed+http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_unacknowledged_alert_climbs_levels_until_acknowledged(
    tmp_path: Path, hooks: tuple[str, list[tuple[str, bytes, str]]]
) -> None:
    base, received = hooks
    escalation = f"""escalation:
  - after_s: 0
    notify: ["{base}/level0"]
  - after_s: 60
    notify: ["{base}/level1"]
  - after_s: 120
    notify: ["{base}/level2"]
"""
    site = write_site(tmp_path, extra=escalation)
    with running_server(base_settings(site, tmp_path / "data")) as kit:
        ingest = kit.api_token("gateway", "ingest")
        sup = kit.user("sam", "supervisor")
        _start_cover(kit, ingest)
        kit.advance(5)
        _lapse(kit, ingest)
        kit.advance(13)  # the alert is raised (grace 10 s + lateness 2 s)
        (alert,) = _alerts(kit, sup)
        assert alert["escalated_level"] == 0
        assert [p for p, _, _ in received] == ["/level0"]
        kit.advance(30)
        assert [p for p, _, _ in received] == ["/level0"]
        kit.advance(31)
        assert [p for p, _, _ in received] == ["/level0", "/level1"]
        (alert,) = _alerts(kit, sup)
        assert alert["escalated_level"] == 1
        r = kit.request(sup, "POST", f"/api/v1/alerts/{alert['id']}/acknowledge",
                        json={"note": "mine"})
        assert r.status_code == 200, r.text
        kit.advance(120)
        assert [p for p, _, _ in received] == ["/level0", "/level1"]
        (alert,) = _alerts(kit, sup)
        assert (alert["escalated_level"], alert["acknowledged_by"]) == (1, "sam")
        for _, body, signature in received:
            assert verify_signature(b"test-secret", body, signature)
            assert orjson.loads(body)["alert_id"] == alert["id"]
        actions = [e.action for e in kit.svc.store.audit_entries(0, 1000)
                   if e.subject == f"alert:{alert['id']}"]
        assert actions == ["alert.raised", "alert.level-due.0", "notification.delivered",
                           "alert.level-due.1", "notification.delivered",
                           "alert.acknowledged"]


def test_site_file_examples_start(tmp_path: Path) -> None:
    """The example site starts and serves its rules (a smoke test of the wiring)."""
    with running_server(base_settings(YARD, tmp_path)) as kit:
        sup = kit.user("sam", "supervisor")
        r = kit.request(sup, "GET", "/api/v1/cover")
        assert r.status_code == 200
        assert {(s["post"], s["rule"]) for s in r.json()["rules"]} >= {
            ("main-gate", "armed-cover"), ("store", "any-cover")}
        assert kit.client.get("/readyz").status_code == 200


def test_site_with_bare_escalation_names_starts(tmp_path: Path) -> None:
    """`coverwatch check` accepts `notify: [supervisor]`; the server must start with it."""
    site = REPO / "tests" / "unit" / "sites" / "valid.yaml"
    with running_server(base_settings(site, tmp_path)) as kit:
        levels = kit.svc.book.policy.levels
    assert [lv.notify for lv in levels] == [
        ("role:supervisor",),
        ("user:duty-inspector", "https://hooks.example.invalid/coverwatch"),
    ]


def test_report_recomputes_lapses_with_late_events(tmp_path: Path) -> None:
    with running_server(base_settings(YARD, tmp_path / "data")) as k:
        ctl = k.api_token("gateway", "ingest")
        sup = k.user("sam", "supervisor")
        t0 = k.clock()
        k.post_events(ctl, [
            {"t": k.clock.iso(), "kind": "gate", "post": "main-gate", "open": True},
            {"t": k.clock.iso(), "kind": "duty", "officer": "U1", "on": True},
            _fix(k, "U1", 0, 0),
        ])
        k.advance(60)  # U1's only fix goes stale at +30 s: the open gate is unstaffed
        r = k.post_events(ctl, [_fix(k, "U1", 0, 0, -40.0)])  # a fix from +20 s, late
        assert r.json()["late"] == 1
        k.advance(1)

        def gate_lapses(lapses: list[dict[str, Any]]) -> list[str]:
            return [lp["start"] for lp in lapses
                    if (lp["post"], lp["rule"]) == ("main-gate", "open-gate-staffed")]

        live = k.request(sup, "GET", "/api/v1/lapses").json()["lapses"]
        report = k.request(sup, "GET", "/api/v1/report").json()
    assert gate_lapses(live) == [format_time(t0 + 30 * US_PER_S)]
    # The report counts the late fix: fresh until +50 s.
    assert gate_lapses(report["lapses"]) == [format_time(t0 + 50 * US_PER_S)]
    assert report["late_events"] == 1
