"""Who is calling, and may they? Authentication and role checks for every route.

Three kinds of caller:

* people in a browser: a session cookie, plus the session's CSRF token in the
  ``X-CSRF-Token`` header on every state-changing request;
* API clients and services: ``Authorization: Bearer cwt_…`` (an API token
  with roles);
* devices: ``Authorization: Bearer cwd_…`` (one token per device, bound to
  one officer). Devices may only send events.

Routes declare the roles they allow with :func:`require`; the table of routes
and roles is what ``tests/e2e/test_authz_matrix.py`` walks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from coverwatch.server.services import Services
from coverwatch.storage import csrf_matches

__all__ = [
    "DEVICE",
    "PEOPLE",
    "SESSION_COOKIE",
    "LoginLimiter",
    "Principal",
    "require",
    "services",
]

SESSION_COOKIE = "cw_session"
CSRF_HEADER = "x-csrf-token"
DEVICE = "device"
INGEST = "ingest"  # an API-token role for systems that send events (gate sensors, CAD)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
PEOPLE = ("officer", "supervisor", "admin", "auditor", "approver")  # every user role


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``roles`` holds user roles, or "device"."""

    kind: str  # "user", "token" or "device"
    name: str
    roles: frozenset[str]
    officer: str | None = None


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "Authorization header must be 'Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


async def authenticate(request: Request) -> Principal | None:
    """The caller, or None if they presented no credentials at all."""
    svc = services(request)
    store = svc.store
    token = _bearer(request)
    if token is not None:
        if token.startswith("cwd_"):
            device = await asyncio.to_thread(store.device_for_token, token)
            if device is not None and device.active:
                return Principal("device", device.name, frozenset({DEVICE}), device.officer)
        elif token.startswith("cwt_"):
            api = await asyncio.to_thread(store.api_token_for, token)
            if api is not None and api.active:
                return Principal("token", api.name, api.roles)
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = await asyncio.to_thread(store.session_for, cookie, now_us=svc.clock())
        if session is None or not session.user.active:
            raise HTTPException(401, "session expired; log in again")
        if request.method not in _SAFE and not csrf_matches(
            session.csrf_token, request.headers.get(CSRF_HEADER)
        ):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header for this session")
        return Principal("user", session.user.username, session.user.roles)
    return None


def require(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting callers with any of ``roles`` (401/403 otherwise)."""
    allowed = frozenset(roles)

    async def check(request: Request) -> Principal:
        who = await authenticate(request)
        if who is None:
            raise HTTPException(401, "authentication required",
                                headers={"WWW-Authenticate": "Bearer"})
        if not who.roles & allowed:
            raise HTTPException(
                403, f"this needs one of the roles: {', '.join(sorted(allowed))}"
            )
        return who

    check.allowed_roles = allowed  # type: ignore[attr-defined]
    return check


def roles_of(dependency: Callable[..., object]) -> frozenset[str]:
    """The roles a :func:`require` dependency admits (for the matrix test)."""
    return getattr(dependency, "allowed_roles", frozenset())


class LoginLimiter:
    """Slows password guessing without letting anyone lock the real user out.

    Per username *and* client address, the first ``free`` failures cost
    nothing; each further one doubles the wait before that pair is heard
    again (``base_s``, 2 × ``base_s``, … up to ``max_wait_s``), and a success
    clears it. Per address, at most ``limit`` attempts a minute over all
    usernames (one address spraying names). Nothing is counted per username
    alone, so failures from elsewhere never refuse the user's own attempts.
    """

    def __init__(self, limit: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, *, free: int = 5,
                 base_s: float = 1.0, max_wait_s: float = 900.0,
                 max_entries: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.free = free
        self.base_s = base_s
        self.max_wait_s = max_wait_s
        self.max_entries = max_entries
        self._hits: dict[str, deque[float]] = {}
        # (username, address) -> (failures, not before)
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}

    def wait_s(self, username: str, address: str) -> float:
        """Seconds before this attempt may be heard (0: now). Counts the attempt if so."""
        now = self.clock()
        _, not_before = self._failures.get((username, address), (0, 0.0))
        if now < not_before:
            return not_before - now
        hits = self._hits.setdefault(address, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.window_s - now
        hits.append(now)
        return 0.0

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        count = self._failures.get((username, address), (0, 0.0))[0] + 1
        over = count - self.free
        wait = 0.0 if over <= 0 else min(self.max_wait_s, self.base_s * 2.0 ** min(over - 1, 60))
        self._failures[(username, address)] = (count, now + wait)
        if len(self._failures) > self.max_entries or len(self._hits) > self.max_entries:
            self._prune(now)

    def succeeded(self, username: str, address: str) -> None:
        self._failures.pop((username, address), None)

    def _prune(self, now: float) -> None:
        # Bounded memory under a spray of names or addresses: forget the oldest.
        for key, (_, not_before) in list(self._failures.items()):
            if not_before + self.max_wait_s < now or len(self._failures) > self.max_entries:
                del self._failures[key]
        for addr, hits in list(self._hits.items()):
            if not hits or hits[-1] <= now - self.window_s or len(self._hits) > self.max_entries:
                del self._hits[addr]
