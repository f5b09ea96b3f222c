"""The role-by-endpoint matrix: every route of the app, every kind of caller.

``EXPECTED`` lists each (method, path) with the callers allowed. The test fails
if the app has a route the table does not list, so a new route cannot appear
without someone deciding who may call it. Requests go to a real uvicorn server
so that the SSE feed can be called like any other route.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.routing import Route

from coverwatch.storage.tables import users
from serverkit import (
    PASSWORD,
    YARD,
    Caller,
    FakeClock,
    LiveServer,
    base_settings,
    live_server,
    running_server,
)

ANON = "anonymous"
OFFICER, SUPERVISOR, ADMIN, AUDITOR = "officer", "supervisor", "admin", "auditor"
APPROVER = "approver"
INGEST, DEVICE = "ingest-token", "device"
ROLES = (OFFICER, SUPERVISOR, ADMIN, AUDITOR, APPROVER)
CALLERS = (ANON, *ROLES, INGEST, DEVICE)
EVERYONE = frozenset(CALLERS)
PEOPLE = frozenset(ROLES)
SUPERVISION = frozenset({SUPERVISOR, ADMIN, AUDITOR})

# (method, path) -> callers allowed. "device" on /osmand means the device
# token given as the OsmAnd ``id`` (the protocol has no other credential).
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/readyz"): EVERYONE,
    ("GET", "/metrics"): frozenset({ADMIN, AUDITOR}),
    ("POST", "/api/v1/login"): EVERYONE,
    ("POST", "/api/v1/logout"): PEOPLE,
    ("GET", "/api/v1/me"): PEOPLE,
    ("GET", "/api/v1/me/duty"): frozenset({OFFICER}),
    ("POST", "/api/v1/me/duty"): frozenset({OFFICER, DEVICE}),
    ("POST", "/api/v1/events"): frozenset({DEVICE, INGEST, SUPERVISOR, ADMIN}),
    ("GET", "/osmand"): frozenset({DEVICE}),
    ("POST", "/osmand"): frozenset({DEVICE}),
    # OwnTracks: HTTP Basic with the device token as password (coverwatch.api.interop_routes).
    ("POST", "/owntracks"): frozenset({DEVICE}),
    ("GET", "/api/v1/export"): SUPERVISION,
    ("GET", "/api/v1/cover"): SUPERVISION,
    ("GET", "/api/v1/officers"): SUPERVISION,
    ("GET", "/api/v1/lapses"): SUPERVISION,
    ("GET", "/api/v1/alerts"): SUPERVISION,
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): frozenset({SUPERVISOR, ADMIN}),
    ("POST", "/api/v1/alerts/{alert_id}/close"): frozenset({SUPERVISOR, ADMIN}),
    ("GET", "/api/v1/alerts/{alert_id}"): SUPERVISION,
    ("POST", "/api/v1/alerts/{alert_id}/dispatch"): frozenset({SUPERVISOR, ADMIN}),
    ("POST", "/api/v1/alerts/{alert_id}/shelve"): frozenset({SUPERVISOR, ADMIN}),
    ("DELETE", "/api/v1/alerts/{alert_id}/shelve"): frozenset({SUPERVISOR, ADMIN}),
    ("POST", "/api/v1/posts/{post}/shelve"): frozenset({SUPERVISOR, ADMIN}),
    ("GET", "/api/v1/incidents"): frozenset({SUPERVISOR, ADMIN, AUDITOR}),
    ("POST", "/api/v1/incidents/{incident_id}/acknowledge"): frozenset({SUPERVISOR, ADMIN}),
    ("DELETE", "/api/v1/posts/{post}/shelve"): frozenset({SUPERVISOR, ADMIN}),
    ("GET", "/api/v1/me/dispatches"): frozenset({OFFICER}),
    ("GET", "/api/v1/tours"): SUPERVISION,
    ("GET", "/api/v1/me/tours"): frozenset({OFFICER}),
    ("POST", "/api/v1/me/scans"): frozenset({OFFICER, DEVICE}),
    ("GET", "/api/v1/feed"): SUPERVISION,
    ("GET", "/api/v1/users"): frozenset({ADMIN}),
    ("POST", "/api/v1/users"): frozenset({ADMIN}),
    ("PATCH", "/api/v1/users/{username}"): frozenset({ADMIN}),
    ("GET", "/api/v1/devices"): frozenset({ADMIN}),
    ("GET", "/api/v1/dead-letters"): frozenset({ADMIN}),
    ("POST", "/api/v1/devices"): frozenset({ADMIN}),
    ("DELETE", "/api/v1/devices/{name}"): frozenset({ADMIN}),
    ("POST", "/api/v1/devices/{name}/rotate"): frozenset({ADMIN}),
    ("GET", "/api/v1/audit"): frozenset({AUDITOR, ADMIN}),
    ("GET", "/api/v1/audit/verify"): frozenset({AUDITOR, ADMIN}),
    ("POST", "/api/v1/audit/anchor"): frozenset({AUDITOR, ADMIN}),
    ("GET", "/api/v1/audit/anchored"): frozenset({AUDITOR, ADMIN}),
    ("GET", "/api/v1/audit/public-key"): frozenset({AUDITOR, ADMIN}),
    ("GET", "/api/v1/evidence"): frozenset({AUDITOR, ADMIN}),
    ("GET", "/api/v1/retention"): frozenset({AUDITOR, ADMIN}),
    ("GET", "/api/v1/records/daily"): SUPERVISION,
    ("GET", "/api/v1/records/time-in-area"): SUPERVISION,
    ("PUT", "/api/v1/retention"): frozenset({ADMIN}),
    ("POST", "/api/v1/holds"): frozenset({AUDITOR, ADMIN}),
    ("POST", "/api/v1/holds/{hold_id}/release"): frozenset({ADMIN}),
    ("POST", "/api/v1/site/reload"): frozenset({ADMIN, APPROVER}),
    ("POST", "/api/v1/site/apply"): frozenset({ADMIN, APPROVER}),
    # Post orders, acknowledgements, rosters and qualifications (coverwatch.server.briefing).
    ("GET", "/api/v1/orders"): PEOPLE,
    ("GET", "/api/v1/me/orders"): frozenset({OFFICER, DEVICE}),
    ("POST", "/api/v1/orders/{post}/acknowledge"): frozenset({OFFICER, DEVICE}),
    ("GET", "/api/v1/orders/status"): SUPERVISION,
    ("POST", "/api/v1/roster"): frozenset({SUPERVISOR, ADMIN}),
    ("GET", "/api/v1/roster/shifts"): SUPERVISION,
    ("POST", "/api/v1/roster/shifts"): frozenset({SUPERVISOR, ADMIN}),
    ("DELETE", "/api/v1/roster/shifts/{shift_id}"): frozenset({SUPERVISOR, ADMIN}),
    ("GET", "/api/v1/officers/{officer}/qualifications"): frozenset({ADMIN}),
    ("POST", "/api/v1/officers/{officer}/qualifications"): frozenset({ADMIN}),
    ("POST", "/api/v1/qualifications"): frozenset({ADMIN}),
    # The dashboard (coverwatch.web): its JSON endpoints and its pages.
    ("GET", "/api/v1/report"): SUPERVISION,
    ("GET", "/api/v1/site"): SUPERVISION,
    ("GET", "/api/v1/site/background"): SUPERVISION,
    ("GET", "/api/v1/plan"): SUPERVISION,
    ("GET", "/api/v1/alerts/board"): SUPERVISION,
    ("GET", "/api/v1/timeline"): SUPERVISION,
    ("GET", "/api/v1/cover/at"): SUPERVISION,
    ("POST", "/api/v1/plan/check"): frozenset({SUPERVISOR, ADMIN}),
    ("GET", "/login"): EVERYONE,
    ("GET", "/"): PEOPLE - {APPROVER},
    ("GET", "/control"): SUPERVISION,
    ("GET", "/duty"): frozenset({OFFICER}),
    ("GET", "/audit"): frozenset({AUDITOR, ADMIN}),
    ("GET", "/planning"): SUPERVISION,
    ("GET", "/people"): frozenset({ADMIN}),
    ("GET", "/sites"): SUPERVISION,
    ("GET", "/api/v1/sites"): SUPERVISION,
    ("?", "/static"): EVERYONE,  # code and styles only, no data
    # FastAPI's generated API docs are not served outside `coverwatch demo`:
    # they cannot be put behind a role.
}

# A valid request body (and query) per route, so that allowed callers get past
# validation; path parameters are filled from PATH_VALUES.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/orders/{post}/acknowledge"): {"json": {"version": "000000000000"}},
    ("POST", "/api/v1/roster"): {"content": "officer,post,start,end\n"},
    ("POST", "/api/v1/roster/shifts"): {"json": {
        "officer": "A7", "patrol": "perimeter", "start": "2030-01-01T08:00:00Z",
        "end": "2030-01-01T20:00:00Z"}},
    ("POST", "/api/v1/officers/{officer}/qualifications"): {"json": {
        "qualification": "first-aid", "valid_until": "2031-01-01"}},
    ("POST", "/api/v1/qualifications"): {"content": "officer,qualification,valid_until\n"},
    ("POST", "/api/v1/login"): {"json": {"username": "target-user", "password": PASSWORD}},
    ("POST", "/api/v1/events"): {"json": []},
    ("POST", "/api/v1/me/duty"): {"json": {"on": True}},
    ("POST", "/api/v1/me/scans"): {"json": {"checkpoint": "store-west-door"}},
    ("GET", "/api/v1/cover/at"): {"params": {"t": "2030-01-01T08:00:00Z"}},
    ("GET", "/api/v1/export"): {"params": {"since": "2030-01-01T07:00:00Z",
                                           "until": "2030-01-01T08:00:00Z", "format": "csv"}},
    ("GET", "/api/v1/records/daily"): {"params": {"date": "2029-12-31"}},
    ("GET", "/api/v1/records/time-in-area"): {"params": {"since": "2029-12-31T08:00:00Z",
                                                         "until": "2029-12-31T09:00:00Z"}},
    ("PUT", "/api/v1/retention"): {"json": {"positions_days": 90}},
    ("POST", "/api/v1/holds"): {"json": {"since": "2029-01-01T00:00:00Z",
                                         "until": "2029-02-01T00:00:00Z",
                                         "reason": "inquest request 17"}},
    ("GET", "/api/v1/evidence"): {"params": {"since": "2029-12-31T08:00:00Z",
                                             "until": "2029-12-31T09:00:00Z"}},
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): {"json": {"note": "on it"}},
    ("POST", "/api/v1/alerts/{alert_id}/close"): {"json": {"note": "done"}},
    ("POST", "/api/v1/alerts/{alert_id}/dispatch"): {"json": {"officer": "A7"}},
    ("POST", "/api/v1/alerts/{alert_id}/shelve"): {"json": {"minutes": 5, "reason": "test"}},
    ("POST", "/api/v1/posts/{post}/shelve"): {"json": {"minutes": 5, "reason": "works"}},
    ("POST", "/api/v1/incidents/{incident_id}/acknowledge"): {"json": {"note": "on it"}},
    ("POST", "/api/v1/users"): {"json": {"username": "new-user", "password": PASSWORD,
                                          "roles": ["officer"]}},
    ("PATCH", "/api/v1/users/{username}"): {"json": {"roles": ["officer"]}},
    ("POST", "/api/v1/devices"): {"json": {"name": "new-device", "officer": "A9"}},
    # A one-officer, one-minute plan: cheap to check, valid against the yard.
    ("POST", "/api/v1/plan/check"): {"json": {
        "plan": "plan: authz\nstart: 2030-01-01T08:00:00Z\nhours: 0.02\n"
                "officers:\n  - id: a1\n    post: main-gate\n",
        "samples": 10}},
}
# Browser pages send an anonymous caller to the login page instead of a 401.
PAGES = frozenset({"/", "/control", "/duty", "/audit", "/planning", "/people", "/sites"})
STATIC_FILE = "/static/app.css"
PATH_VALUES = {"alert_id": "lapse-0000000000000000", "username": "target-user",
               "post": "main-gate", "officer": "A7", "shift_id": "999999", "hold_id": "999999",
               "name": "spare-device", "incident_id": "incident-x"}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves; a route kind it cannot read is listed as "?"."""
    out: set[tuple[str, str]] = set()

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:  # FastAPI's include_router wrapper
                context = getattr(route, "include_context", None)
                inner = prefix + str(getattr(context, "prefix", "") or "")
                walk(list(included.routes) + list(getattr(included, "_low_priority_routes", [])),
                     inner)
            elif isinstance(route, Route):
                for method in route.methods or ():
                    if method != "HEAD":
                        out.add((method, prefix + route.path))
            else:  # a Mount or WebSocket route: the table must name it explicitly
                out.add(("?", prefix + str(getattr(route, "path", repr(route)))))

    walk(app.routes, "")
    return out


def test_every_route_is_in_the_table(tmp_path: Path) -> None:
    with running_server(base_settings(YARD, tmp_path)) as kit:
        routes = app_routes(kit.app)
    unlisted = routes - set(EXPECTED)
    assert not unlisted, f"routes with no row in the authorisation table: {sorted(unlisted)}"
    gone = set(EXPECTED) - routes
    assert not gone, f"table rows for routes that no longer exist: {sorted(gone)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    clock = FakeClock()
    settings = base_settings(YARD, tmp_path_factory.mktemp("authz"),
                             login_attempts_per_minute=10_000)
    with live_server(settings, clock) as srv:
        store = srv.svc.store
        for role in ROLES:
            store.create_user(f"u-{role}", PASSWORD, [role])
        store.create_user("target-user", PASSWORD, ["officer"])
        yield srv


def _callers(srv: LiveServer) -> dict[str, Callable[[], Caller | None]]:
    """A fresh credential per request (logout ends a session)."""
    store = srv.svc.store
    _, ingest = store.create_api_token("ingest-service", ["ingest"])
    _, device = store.create_device("phone-a1", "A1")

    def person(role: str) -> Callable[[], Caller]:
        def make() -> Caller:
            user = store.get_user(f"u-{role}")
            assert user is not None
            s = store.create_session(user.id, now_us=srv.clock(), ttl_us=3600 * 10**6)
            return Caller(role, cookie=s.token, csrf=s.csrf_token)
        return make

    out: dict[str, Callable[[], Caller | None]] = {ANON: lambda: None}
    out |= {role: person(role) for role in ROLES}
    out[INGEST] = lambda: Caller(INGEST, headers={"Authorization": f"Bearer {ingest}"})
    out[DEVICE] = lambda: Caller(DEVICE, headers={"Authorization": f"Bearer {device}"})
    return out


# One TLS context for every client: httpx builds a new one (loading the CA bundle, ~30 ms of
# CPU) per client otherwise, and the matrix makes ~800 clients. The server is plain HTTP.
_TLS = ssl.create_default_context()


def _status(srv: LiveServer, caller: Caller | None, method: str, path: str,
            *, csrf: bool = True, **kwargs: Any) -> int:
    headers = {} if caller is None else caller.for_method(method, csrf=csrf)
    # A fresh client per request: no cookie from one caller's answer reaches the next.
    with httpx.Client(base_url=srv.url, timeout=20, verify=_TLS) as client, \
            client.stream(method, path, headers=headers, **kwargs) as response:
        return response.status_code  # the body is not read: the feed never ends


def test_role_by_endpoint_matrix(server: LiveServer) -> None:
    callers = _callers(server)
    _, device_token = server.svc.store.create_device("osmand-phone", "A2")
    failures: list[str] = []
    for (method, template), allowed in sorted(EXPECTED.items()):
        path = STATIC_FILE if method == "?" else template.format(**PATH_VALUES)
        method = "GET" if method == "?" else method
        for kind in CALLERS:
            if template in ("/api/v1/devices/{name}", "/api/v1/devices/{name}/rotate"):
                spare = f"spare-{kind}" + ("-rotate" if template.endswith("rotate") else "")
                server.svc.store.create_device(spare, "A5")
                path = template.replace("{name}", spare)
            kwargs = dict(BODIES.get((method, template), {}))
            caller = callers[kind]()
            if template == "/osmand":
                # OsmAnd's only credential is the id; other callers' headers are ignored.
                params = {"lat": "51.5", "lon": "-0.12", "timestamp": "1893484800"}
                if kind == DEVICE:
                    params["id"] = device_token
                kwargs = {"params": params} if method == "GET" else {"data": params}
            if template == "/owntracks":
                # Basic auth with the device token; other callers' headers are not Basic.
                kwargs = {"json": {"_type": "location", "lat": 51.5, "lon": -0.12,
                                   "tst": 1893484800, "acc": 10}}
                if kind == DEVICE:
                    basic = base64.b64encode(f"phone:{device_token}".encode()).decode()
                    caller = Caller(DEVICE, headers={"Authorization": f"Basic {basic}"})
            status = _status(server, caller, method, path, **kwargs)
            if kind in allowed:
                ok = status not in (401, 403) and status < 500
                want = "neither 401 nor 403"
            elif kind == ANON and template in PAGES:
                ok, want = status == 303, "303 to the login page"
            elif kind == ANON or template in ("/osmand", "/owntracks"):
                ok, want = status == 401, "401"
            else:
                ok, want = status == 403, "403"
            if not ok:
                failures.append(f"{method} {template} as {kind}: got {status}, want {want}")
    assert not failures, "\n".join(failures)


UNSAFE = sorted(k for k in EXPECTED
                if k[0] not in ("GET", "?")
                and k[1] not in ("/api/v1/login", "/osmand", "/owntracks"))


@pytest.mark.parametrize(("method", "template"), UNSAFE)
@pytest.mark.parametrize("csrf", ["missing", "wrong"])
def test_unsafe_method_with_session_needs_csrf(
    server: LiveServer, method: str, template: str, csrf: str
) -> None:
    store = server.svc.store
    # A person the route admits: admin, or an officer for an officer's own routes.
    role = ADMIN if ADMIN in EXPECTED[(method, template)] else OFFICER
    user = store.get_user(f"u-{role}")
    assert user is not None
    s = store.create_session(user.id, now_us=server.clock(), ttl_us=3600 * 10**6)
    caller = Caller(role, cookie=s.token, csrf="not-the-token" if csrf == "wrong" else None)
    path = template.format(**PATH_VALUES)
    kwargs = BODIES.get((method, template), {})
    assert _status(server, caller, method, path, **kwargs) == 403
    # The same request with the right token passes the CSRF check.
    good = Caller(role, cookie=s.token, csrf=s.csrf_token)
    if template != "/api/v1/logout":
        assert _status(server, good, method, path, **kwargs) not in (401, 403)


def test_login_is_rate_limited(tmp_path: Path) -> None:
    settings = base_settings(YARD, tmp_path, login_attempts_per_minute=3)
    with running_server(settings) as kit:
        kit.svc.store.create_user("sam", PASSWORD, ["supervisor"])
        for _ in range(3):
            r = kit.client.post("/api/v1/login", json={"username": "sam", "password": "nope"})
            assert r.status_code == 401
        # Even the right password is refused now, until the window passes.
        r = kit.client.post("/api/v1/login", json={"username": "sam", "password": PASSWORD})
        assert r.status_code == 429
        assert r.headers.get("retry-after")


def test_login_session_and_deactivation(tmp_path: Path) -> None:
    with running_server(base_settings(YARD, tmp_path)) as kit:
        kit.svc.store.create_user("sam", PASSWORD, ["supervisor"])
        admin = kit.user("root", "admin")
        r = kit.client.post("/api/v1/login", json={"username": "sam", "password": PASSWORD})
        assert r.status_code == 200, r.text
        csrf = r.json()["csrf_token"]
        cookie = r.cookies.get("cw_session")
        assert cookie
        sam = Caller("sam", cookie=cookie, csrf=csrf)
        assert kit.request(sam, "GET", "/api/v1/alerts").status_code == 200
        r = kit.request(admin, "PATCH", "/api/v1/users/sam", json={"active": False})
        assert r.status_code == 200, r.text
        assert r.json()["active"] is False
        assert kit.request(sam, "GET", "/api/v1/alerts").status_code == 401
        r = kit.client.post("/api/v1/login", json={"username": "sam", "password": PASSWORD})
        assert r.status_code == 401
        # Logins and the change are in the audit log.
        actions = [e["action"] for e in kit.request(admin, "GET", "/api/v1/audit",
                                                    params={"limit": 1000}).json()["entries"]]
        assert "user.changed" in actions


def test_passwords_are_argon2_hashes(tmp_path: Path) -> None:
    with running_server(base_settings(YARD, tmp_path)) as kit:
        admin = kit.user("root", "admin")
        r = kit.request(admin, "POST", "/api/v1/users",
                        json={"username": "pat", "password": PASSWORD, "roles": ["officer"]})
        assert r.status_code == 201, r.text
        with kit.svc.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(users))]
    assert {r["username"] for r in rows} == {"root", "pat"}
    for row in rows:
        assert str(row["password_hash"]).startswith("$argon2")
        assert all(PASSWORD not in str(v) for v in row.values())
