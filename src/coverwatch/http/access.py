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
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from fastapi import HTTPException, Request

from coverwatch.domain.roles import ROLES
from coverwatch.server.unit import SiteUnit
from coverwatch.storage import Store, csrf_matches

__all__ = [
    "DEVICE",
    "PEOPLE",
    "SESSION_COOKIE",
    "SITE_STATE",
    "SUPERVISION",
    "LoginLimiter",
    "Principal",
    "all_sites",
    "deployment",
    "deployment_chain",
    "deployment_site_unit",
    "device_site",
    "named_site",
    "require",
    "site_unit",
]

SESSION_COOKIE = "cw_session"
SITE_STATE = "site"  # set by coverwatch.http.limits.SiteRoutes from /api/v1/sites/{site}/…
_PRINCIPAL = "principal"
CSRF_HEADER = "x-csrf-token"
DEVICE = "device"
INGEST = "ingest"  # an API-token role for systems that send events (gate sensors, CAD)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
PEOPLE = ROLES  # every user role
SUPERVISION = ("supervisor", "admin", "auditor")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``roles`` holds user roles, or "device".

    ``roles`` are deployment-wide (a control room watching every site);
    ``site_roles`` adds a user's roles at single sites, by store key. A
    device belongs to one site: ``site`` is its store key.
    """

    kind: str  # "user", "token" or "device"
    name: str
    roles: frozenset[str]
    officer: str | None = None
    site: str | None = None
    site_roles: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def roles_at(self, site_key: str | None) -> frozenset[str]:
        """The caller's roles at a site (deployment-wide ones included)."""
        if site_key is None:
            return self.roles
        return self.roles | self.site_roles.get(site_key, frozenset())


def all_sites(request: Request) -> dict[str, SiteUnit]:
    """The deployment's sites by id, in the order they were configured."""
    sites: dict[str, SiteUnit] | None = getattr(request.app.state, "sites", None)
    if sites is None:  # an app built around one SiteUnit (tests)
        svc: SiteUnit = request.app.state.site_unit
        return {svc.site.id: svc}
    return sites


def deployment(request: Request) -> SiteUnit:
    """Any site's unit, for what is deployment-wide (users, tokens, sessions, devices)."""
    return next(iter(all_sites(request).values()))


async def deployment_site_unit(request: Request) -> SiteUnit:
    """:func:`deployment` as a route dependency: a coroutine, so FastAPI calls it on the
    event loop instead of handing every request (a phone's fix among them) to a thread."""
    return deployment(request)


def deployment_chain(request: Request) -> Store:
    """Where deployment-wide actions (logins, users, roles) are audited: the site's own
    chain when there is one site, else the deployment's chain (``_deployment``)."""
    chain: Store | None = getattr(request.app.state, "deployment_store", None)
    return chain if chain is not None else deployment(request).store


def _site_in_path(request: Request) -> str | None:
    state = request.scope.get("state") or {}
    site = state.get(SITE_STATE)
    return site if isinstance(site, str) else None


def named_site(request: Request) -> SiteUnit | None:
    """The site named in the path (/api/v1/sites/{site}/…), or the only one; else None."""
    sites = all_sites(request)
    name = _site_in_path(request)
    if name is not None:
        return sites.get(name)
    return next(iter(sites.values())) if len(sites) == 1 else None


def _resolve(request: Request, who: Principal | None) -> SiteUnit | None:
    """The site a request is about: named in the path, the only one, or a device's own."""
    sites = all_sites(request)
    wanted = _site_in_path(request)
    if wanted is not None:
        svc = sites.get(wanted)
        if svc is None:
            raise HTTPException(404, f"no site {wanted!r} in this deployment")
        return svc
    if len(sites) == 1:
        return next(iter(sites.values()))
    if who is not None and who.site is not None:
        return next((s for s in sites.values() if s.store.site == who.site), None)
    return None


def device_site(request: Request, who: Principal) -> SiteUnit:
    """The unit of the site a device belongs to (409 if this deployment lacks it)."""
    svc = _resolve(request, who)
    if svc is None or (who.site is not None and svc.store.site != who.site):
        raise HTTPException(409, f"device {who.name} belongs to a site this deployment "
                                 "does not watch")
    return svc


async def site_unit(request: Request) -> SiteUnit:
    """The unit of the site this request is about (404 if it names none of several)."""
    who = request.scope.get("state", {}).get(_PRINCIPAL)
    if who is None and len(all_sites(request)) > 1 and _site_in_path(request) is None:
        with contextlib.suppress(HTTPException):
            who = await authenticate(request)
    svc = _resolve(request, who)
    if svc is None:
        names = ", ".join(all_sites(request))
        raise HTTPException(404, f"this deployment watches several sites ({names}): "
                                 "use /api/v1/sites/{site}/… for this route")
    if svc.bus is not None:  # distributed: show the owner's latest state
        await svc.bus.refresh_replica()
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
    """The caller, or None if they presented no credentials at all (cached per request)."""
    state = request.scope.setdefault("state", {})
    if _PRINCIPAL in state:
        cached: Principal = state[_PRINCIPAL]
        return cached
    who = await _authenticate(request)
    if who is not None:
        state[_PRINCIPAL] = who
    return who


async def _authenticate(request: Request) -> Principal | None:
    svc = deployment(request)
    store = svc.store
    token = _bearer(request)
    if token is not None:
        if token.startswith("cwd_"):
            device = await asyncio.to_thread(store.device_for_token, token)
            if device is not None and device.active:
                return Principal("device", device.name, frozenset({DEVICE}), device.officer,
                                 site=device.site)
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
        name = session.user.username
        by_site = await asyncio.to_thread(store.site_roles_of, name)
        home = None
        if len(all_sites(request)) > 1:  # an officer's own pages: the site of their devices
            held = {d.site for d in await asyncio.to_thread(store.list_devices)
                    if d.active and d.officer == name}
            home = next(iter(held)) if len(held) == 1 else None
        return Principal("user", name, session.user.roles, site_roles=by_site, site=home)
    return None


def require(
    *roles: str, deployment: bool = False, anywhere: bool = False,
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting callers with any of ``roles`` (401/403 otherwise).

    Roles count at the site the request is about (deployment-wide roles plus the
    caller's roles there); ``deployment``: only deployment-wide roles count (users);
    ``anywhere``: a role at any one site will do (the all-sites board, which then
    shows only those sites).
    """
    allowed = frozenset(roles)

    async def check(request: Request) -> Principal:
        who = await authenticate(request)
        if who is None:
            raise HTTPException(401, "authentication required",
                                headers={"WWW-Authenticate": "Bearer"})
        svc = None if deployment else _resolve(request, who)
        key = None if svc is None else svc.store.site
        if who.kind == "device" and key is not None and who.site != key:
            raise HTTPException(403, f"device {who.name} belongs to another site")
        held = who.roles_at(key)
        if anywhere:
            held = held.union(*who.site_roles.values())
        if not held & allowed:
            where = "" if svc is None or len(all_sites(request)) == 1 else f" at {svc.site.id}"
            raise HTTPException(
                403, f"this needs one of the roles{where}: {', '.join(sorted(allowed))}"
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
