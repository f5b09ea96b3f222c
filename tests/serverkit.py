"""Test kit for the live server: an app on a fake clock, callers of every kind.

``running_server(settings, clock)`` starts :func:`coverwatch.bootstrap.create_app`
under a Starlette ``TestClient`` (the lifespan runs: store, ticker, MQTT) and
yields a :class:`Kit` with the client, the site's unit and helpers to make users,
devices and tokens directly in the store. Time moves only when the test says
so (:class:`FakeClock`); ``kit.tick()`` runs one ticker step on the app's loop.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from coverwatch.bootstrap import create_app
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.server.handlers import tick
from coverwatch.server.unit import SiteUnit
from coverwatch.settings import Settings

__all__ = [
    "ORIGIN_SITE",
    "PASSWORD",
    "REPO",
    "YARD",
    "Caller",
    "FakeClock",
    "Kit",
    "LiveServer",
    "WallClock",
    "base_settings",
    "copy_yard_plan",
    "live_server",
    "running_server",
    "wait_until",
    "write_site",
]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_YARD = REPO / "examples" / "yard" / "site.yaml"


def _quiet_yard() -> Path:
    """The example yard without its ``escalation:`` section. Test servers have no people
    with contacts, so escalation would add "reaches nobody" system alerts to every test
    that counts alerts; tests of escalation write their own sites."""
    import re
    import tempfile

    text = EXAMPLE_YARD.read_text("utf-8")
    quiet = re.sub(r"(?m)^escalation:\n(?:[ -].*\n)+", "", text)
    assert quiet != text, "the example yard's escalation section was not found"
    path = Path(tempfile.mkdtemp(prefix="coverwatch-yard-")) / "site.yaml"
    path.write_text(quiet, "utf-8")
    return copy_yard_plan(path)


def copy_yard_plan(site: Path) -> Path:
    """Put the example yard's plan image beside a copy of its site file (the file
    names it, relative to itself); ``site`` back."""
    import shutil

    shutil.copy(EXAMPLE_YARD.parent / "yard-plan.svg", site.parent / "yard-plan.svg")
    return site


YARD = _quiet_yard()
PASSWORD = "correct horse battery staple"

# A small fictional site with an origin (so OsmAnd lat/lon can be placed) and
# one rule that an officer at the gate satisfies.
ORIGIN_SITE = """\
site: {site_id}
name: Test Quay (fictional)
origin: {{lat: 51.5, lon: -0.12}}
stale_after_s: 30
timezone: UTC
flags: {{open-hours: true}}
posts:
  - id: gate
    at: [0, 0]
    gate: true
    rules:
      - id: cover
        need: 1
        within_m: 25
        grace_s: 10
        when: open-hours
{extra}"""


def write_site(directory: Path, site_id: str = "test-quay", extra: str = "") -> Path:
    """Write :data:`ORIGIN_SITE` (plus ``extra`` top-level YAML) and return its path."""
    path = directory / "site.yaml"
    path.write_text(ORIGIN_SITE.format(site_id=site_id, extra=extra), encoding="utf-8")
    return path


class FakeClock:
    """A clock in µs that moves only when told to."""

    def __init__(self, start: str | int = "2030-01-01T08:00:00Z") -> None:
        self.now: int = parse_time(start) if isinstance(start, str) else start
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> int:
        with self._lock:
            self.now += round(seconds * US_PER_S)
            return self.now

    def iso(self, offset_s: float = 0.0) -> str:
        """The clock's time plus ``offset_s`` as an RFC 3339 string."""
        text: str = format_time(self() + round(offset_s * US_PER_S))
        return text


class WallClock(FakeClock):
    """The real clock, plus whatever :meth:`advance` added (for MQTT tests)."""

    def __init__(self) -> None:
        super().__init__(0)

    def __call__(self) -> int:
        with self._lock:
            return time.time_ns() // 1000 + self.now


@dataclass(frozen=True)
class Caller:
    """How one kind of caller authenticates: headers (and a session cookie)."""

    name: str
    headers: dict[str, str] = field(default_factory=dict)
    cookie: str | None = None
    csrf: str | None = None

    def for_method(self, method: str, *, csrf: bool = True) -> dict[str, str]:
        out = dict(self.headers)
        if self.cookie is not None:
            out["Cookie"] = f"cw_session={self.cookie}"
            if csrf and method not in ("GET", "HEAD", "OPTIONS") and self.csrf:
                out["X-CSRF-Token"] = self.csrf
        return out


@dataclass
class Kit:
    """A running app on a fake clock."""

    app: FastAPI
    client: TestClient
    clock: FakeClock
    settings: Settings

    @property
    def svc(self) -> SiteUnit:
        svc: SiteUnit = self.app.state.site_unit
        return svc

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run an async function on the app's event loop and return its result."""
        portal = self.client.portal
        assert portal is not None
        return portal.call(fn, *args)

    def tick(self) -> Any:
        """One ticker step, then wait for what it sent (notifications run in the background)."""
        changes = self.call(tick, self.svc)
        self.settle()
        return changes

    def settle(self) -> None:
        """Wait until every queued notification has been sent and recorded."""
        self.call(self.svc.outbox.drain)

    def advance(self, seconds: float) -> None:
        """Move the clock on and run one ticker step."""
        self.clock.advance(seconds)
        self.tick()

    # -- callers --------------------------------------------------------------

    def user(self, name: str, *roles: str) -> Caller:
        """A user with ``roles`` and a fresh session (cookie + CSRF token)."""
        store = self.svc.store
        user = store.get_user(name) or store.create_user(name, PASSWORD, roles)
        session = store.create_session(user.id, now_us=self.clock(), ttl_us=3600 * US_PER_S)
        return Caller(name, cookie=session.token, csrf=session.csrf_token)

    def api_token(self, name: str, *roles: str) -> Caller:
        _, token = self.svc.store.create_api_token(name, roles)
        return Caller(name, headers={"Authorization": f"Bearer {token}"})

    def device(self, name: str, officer: str) -> tuple[Caller, str]:
        _, token = self.svc.store.create_device(name, officer)
        return Caller(name, headers={"Authorization": f"Bearer {token}"}), token

    def request(self, caller: Caller | None, method: str, path: str, *,
                csrf: bool = True, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if caller is not None:
            headers.update(caller.for_method(method, csrf=csrf))
        self.client.cookies.clear()
        response: httpx.Response = self.client.request(method, path, headers=headers, **kwargs)
        return response

    def post_events(self, caller: Caller, events: Any, **kwargs: Any) -> httpx.Response:
        return self.request(caller, "POST", "/api/v1/events", json=events, **kwargs)


def base_settings(site_path: Path, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: a slow ticker (tests tick by hand), a known webhook secret, and a
    watchdog that never looks by itself (tests call ``watchdog.watch_once``)."""
    settings = Settings(site_path=site_path, data_dir=data_dir, tick_s=3600.0,
                        webhook_secret="test-secret", watch_s=3600.0)
    return replace(settings, **overrides)


@contextlib.contextmanager
def running_server(settings: Settings, clock: FakeClock | None = None) -> Iterator[Kit]:
    """Start the app (lifespan included) and yield a :class:`Kit`."""
    clock = clock or FakeClock()
    app = create_app(settings, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Kit(app, client, clock, settings)


# -- a real uvicorn server, for streaming (SSE) ------------------------------------


@dataclass
class LiveServer:
    app: FastAPI
    url: str
    clock: FakeClock

    @property
    def svc(self) -> SiteUnit:
        svc: SiteUnit = self.app.state.site_unit
        return svc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(settings: Settings, clock: FakeClock) -> Iterator[LiveServer]:
    """Serve the app with uvicorn on a free local port, in a thread."""
    import uvicorn

    app = create_app(settings, clock=clock)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2,
                                           proxy_headers=False))  # as `coverwatch serve`
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    try:
        yield LiveServer(app, f"http://127.0.0.1:{port}", clock)
    finally:
        server.should_exit = True
        thread.join(15)


def wait_until(cond: Callable[[], Any], *, timeout_s: float = 20.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail after a deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
