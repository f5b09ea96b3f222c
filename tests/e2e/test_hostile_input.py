"""Hostile input through the HTTP API (issue 9): each request gets a precise 4xx
with the problem body, never a 500, a crash or a stalled event loop."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import coverwatch.api.routes as routes
from coverwatch.storage import InvalidRolesError
from serverkit import (
    PASSWORD,
    YARD,
    FakeClock,
    Kit,
    base_settings,
    live_server,
    running_server,
    wait_until,
)

DEEP = 50_000
PLAN = "plan: deep\nstart: 2030-01-01T08:00:00Z\nhours: 0.02\nofficers: " + "[" * DEEP


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    with running_server(base_settings(YARD, tmp_path)) as k:
        yield k


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and isinstance(body["detail"], str)
    assert body["errors"] and all({"index", "field", "message"} <= set(e) for e in body["errors"])
    return body


# -- 1. nesting depth ---------------------------------------------------------------


def test_deeply_nested_plan_and_site_are_refused_with_line_and_field(kit: Kit) -> None:
    sup = kit.user("sup", "supervisor")
    r = kit.request(sup, "POST", "/api/v1/plan/check", json={"plan": PLAN, "samples": 10})
    (e,) = _problem(r, 422)["errors"]
    assert (e["line"], e["field"]) == (4, "officers" + "[0]" * 7)
    assert "nest more than 64 levels" in e["message"]
    admin = kit.user("root", "admin")
    site = YARD.read_text().replace("at: [0, 0]", "at: " + "[" * DEEP, 1)
    r = kit.request(admin, "POST", "/api/v1/site/apply", json={"site": site, "reason": "x"})
    (e,) = _problem(r, 422)["errors"]
    assert e["line"] and e["field"].startswith("posts[0].at")
    # The server is still up.
    assert kit.client.get("/healthz").status_code == 200


@pytest.mark.parametrize("depth", [17, 300, 1000, 5000])
def test_deeply_nested_event_values_are_422_naming_the_field(kit: Kit, depth: int) -> None:
    token = kit.api_token("gw", "ingest")
    good = {"t": kit.clock.iso(), "kind": "duty", "officer": "A1", "on": True}
    # Written out by hand: the test client's own JSON encoder recurses.
    text = orjson.dumps(good).decode()
    body = f'[{text}, {text[:-1]}, "note": {"[" * depth}1{"]" * depth}}}]'
    r = kit.request(token, "POST", "/api/v1/events", content=body,
                    headers={"Content-Type": "application/json"})
    status = 400 if depth > 1000 else 422  # orjson stops at 1024 levels
    errors = _problem(r, status)["errors"]
    if status == 422:
        assert [(e["index"], e["field"]) for e in errors] == [(1, "note")]
        assert "nest more than 16 deep" in errors[0]["message"]


def test_large_batches_are_checked_off_the_event_loop(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = kit.call(_thread_id)
    seen: list[int] = []
    real = routes.validate_records

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(routes, "validate_records", spy)
    token = kit.api_token("gw", "ingest")
    events = [{"t": kit.clock.iso(), "kind": "duty", "officer": f"A{i}", "on": True}
              for i in range(50)]
    assert kit.post_events(token, events).status_code == 200
    assert seen and loop_thread not in seen


async def _thread_id() -> int:
    return threading.get_ident()


# -- 5. integers beyond 64 bits ----------------------------------------------------------

HUGE = "9" * 40


def test_integers_beyond_64_bits_are_422(kit: Kit) -> None:
    admin = kit.user("root", "admin")
    _problem(kit.request(admin, "GET", "/api/v1/audit", params={"after": HUGE}), 422)
    _problem(kit.request(admin, "DELETE", f"/api/v1/roster/shifts/{HUGE}"), 422)
    _problem(kit.request(admin, "GET", "/api/v1/report", params={"since": HUGE}), 422)
    site = YARD.read_text().replace("at: [0, 0]", f"at: [{'9' * 400}, 0]", 1)
    r = kit.request(admin, "POST", "/api/v1/site/apply", json={"site": site, "reason": "x"})
    (e,) = _problem(r, 422)["errors"]
    assert e["field"] == "posts[0].at[0]" and "finite" in e["message"]


# -- 7. smaller findings -------------------------------------------------------------


@pytest.mark.parametrize(("password", "why"), [
    ("a" * 12, "5 different"), ("abab" * 4, "5 different"), ("short-1", "12 characters"),
    ("Pat.Smith.99", "username"), ("my-pat.smith.99-pw", "username")])
def test_weak_passwords_are_refused(kit: Kit, password: str, why: str) -> None:
    admin = kit.user("root", "admin")
    r = kit.request(admin, "POST", "/api/v1/users",
                    json={"username": "pat.smith.99", "password": password, "roles": ["officer"]})
    (e,) = _problem(r, 422)["errors"]
    assert e["field"] == "password" and why in e["message"]


def test_a_user_needs_a_role(kit: Kit) -> None:
    admin = kit.user("root", "admin")
    r = kit.request(admin, "POST", "/api/v1/users",
                    json={"username": "pat", "password": PASSWORD, "roles": []})
    assert _problem(r, 422)["errors"][0]["field"] == "roles"
    kit.svc.store.create_user("sam", PASSWORD, ["officer"])
    r = kit.request(admin, "PATCH", "/api/v1/users/sam", json={"roles": []})
    assert _problem(r, 422)["errors"][0]["field"] == "roles"
    with pytest.raises(InvalidRolesError):
        kit.svc.store.create_user("lee", PASSWORD, [])
    with pytest.raises(InvalidRolesError):
        kit.svc.store.set_roles("sam", [])


def test_revoking_a_revoked_device_writes_one_audit_entry(kit: Kit) -> None:
    admin = kit.user("root", "admin")
    kit.device("phone-1", "A1")
    for _ in range(3):
        r = kit.request(admin, "DELETE", "/api/v1/devices/phone-1")
        assert r.status_code == 200 and r.json()["active"] is False
    revoked = [e for e in kit.svc.store.audit_entries()
               if e.action.endswith("revoked") and "phone-1" in e.subject]
    assert len(revoked) == 1


def test_an_aborted_upload_logs_no_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with live_server(base_settings(YARD, tmp_path), FakeClock()) as served:
        _, token = served.svc.store.create_api_token("gw", ["ingest"])
        port = int(served.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b"Content-Length: 100000\r\n\r\n[{\"t\": 1")
        wait_until(lambda: any("client went away" in r.getMessage() for r in caplog.records),
                   what="the server to notice the aborted upload")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
