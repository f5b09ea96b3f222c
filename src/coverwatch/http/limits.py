"""Limits applied to every request before any route sees it (ASGI middleware), and
the site-scoped route prefix (:class:`SiteRoutes`).

* **Body size.** A declared ``Content-Length`` over the limit is refused with
  413 before a byte of the body is read; a body without one (chunked) is
  counted as it arrives and refused as soon as it passes the limit, so no
  request can make the server hold more than the limit in memory. Public
  routes (login, OsmAnd, the probes, the login page and its static files) and
  any request that presents no credential at all get the small
  ``public_body_bytes``; authenticated callers get ``max_body_bytes``.
* **Authentication before the body.** A request that brings a body and a
  credential (a bearer token or the session cookie) has that credential
  checked here, before a byte of the body is read or parsed: a wrong one is
  answered 401 (403 for a missing CSRF token) at once and the connection
  closed, so a bogus token can never make the server read 16 MiB. The caller
  found is kept for the route (no second lookup).
* **Slow bodies.** A body that pauses for more than ``body_idle_s`` (20 s) between
  two parts is answered 408 and the connection closed (the request head has
  its own deadline: :mod:`coverwatch.http.slowclients`).
* **Client address.** ``X-Forwarded-For`` is believed only when the peer is one
  of the configured trusted proxies (addresses or networks; none by default),
  and then read from the right, skipping the trusted hops, so a client cannot
  forge the address that login limits and the audit log use.

docs/security.md describes both, with their settings.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coverwatch.http.problems import ProblemError, problem_response

__all__ = [
    "BODY_IDLE_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PUBLIC_BODY_BYTES",
    "PUBLIC_PATHS",
    "BodyTimeout",
    "BodyTooLarge",
    "RequestLimits",
    "SiteRoutes",
    "forwarded_client",
    "parse_networks",
]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # 50 000 events of JSON fit, with room
DEFAULT_PUBLIC_BODY_BYTES = 64 * 1024  # a login or a phone's report is < 1 KB
# Routes anyone may call without a credential (prefixes).
PUBLIC_PATHS = ("/api/v1/login", "/osmand", "/owntracks", "/healthz", "/readyz", "/login",
                "/static")

SITE_PREFIX = "/api/v1/sites/"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


#: How long a request body may pause between two parts before the request is dropped.
BODY_IDLE_S = 20.0


class BodyTimeout(ProblemError):
    """A request body stopped arriving (408): the connection is closed."""

    def __init__(self, idle_s: float) -> None:
        super().__init__(408, f"the request body stopped arriving for {idle_s:g} s",
                         headers={"Connection": "close"})


class BodyTooLarge(ProblemError):
    """A request body passed its limit (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes",
                         [{"index": None, "field": None,
                           "message": f"at most {limit} bytes are accepted here"}],
                         headers={"Connection": "close"})


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or networks (``10.0.0.0/8``, ``::1``); raises ValueError naming a bad one."""
    out = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {text!r}") from None
    return tuple(out)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def forwarded_client(peer: str, forwarded_for: str | None,
                     trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, unless a trusted proxy says otherwise.

    Walks ``X-Forwarded-For`` from the right (the hop nearest to us) and returns
    the first address that is not a trusted proxy; a malformed entry stops the
    walk there (everything left of it may be forged).
    """
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        text = hop.strip()
        try:
            ipaddress.ip_address(text)
        except ValueError:
            break
        client = text
        if not _trusted(text, trusted):
            break
    return client


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]
    return ",".join(values) if values else None


def _has_credentials(scope: Scope) -> bool:
    for key, value in scope.get("headers", ()):
        k = key.lower()
        if k == b"authorization" or (k == b"cookie" and b"cw_session=" in value):
            return True
    return False


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


class RequestLimits:
    """The middleware: body-size limits and the trusted-proxy client address."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 public_body_bytes: int = DEFAULT_PUBLIC_BODY_BYTES,
                 trusted_proxies: Iterable[str] = (), body_idle_s: float = BODY_IDLE_S) -> None:
        self.app = app
        self.body_idle_s = body_idle_s
        self.max_body_bytes = max_body_bytes
        self.public_body_bytes = min(public_body_bytes, max_body_bytes)
        self.trusted = parse_networks(trusted_proxies)

    def limit_for(self, scope: Scope) -> int:
        """The limit before authentication: the larger one only if a credential is shown
        (and then only once it is checked, see :meth:`_authenticated`)."""
        path: str = scope.get("path", "")
        public = any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)
        if public or not _has_credentials(scope):
            return self.public_body_bytes
        return self.max_body_bytes

    @staticmethod
    async def _authenticated(scope: Scope, receive: Receive, send: Send) -> bool | None:
        """Check the credential before the body: True if it holds, None if there was
        none after all; otherwise the refusal is sent (body unread) and False returned."""
        from fastapi import HTTPException, Request

        from coverwatch.http.access import authenticate

        try:
            who = await authenticate(Request(scope))
        except HTTPException as e:
            headers = {**(e.headers or {}), "Connection": "close"}
            await problem_response(e.status_code, str(e.detail), headers=headers)(
                scope, receive, send)
            return False
        return None if who is None else True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if client and self.trusted:
            address = forwarded_client(client[0], _header(scope, b"x-forwarded-for"),
                                       self.trusted)
            scope = {**scope, "client": (address, client[1])}
        limit = self.limit_for(scope)
        declared = _header(scope, b"content-length")
        has_body = declared not in (None, "0") or _header(scope, b"transfer-encoding") is not None
        if limit > self.public_body_bytes and has_body:
            known = await self._authenticated(scope, receive, send)
            if known is False:
                return
            if known is None:
                limit = self.public_body_bytes
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await problem_response(400, "Content-Length is not a number")(
                    scope, receive, send)
                return
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
        if declared is None and limit == self.public_body_bytes \
                and _header(scope, b"transfer-encoding") is not None:
            # A chunked body to a public route: take it all (at most the small limit)
            # before the route runs, so that every public route answers 413 alike.
            try:
                buffered = await asyncio.wait_for(self._read_small(receive, limit),
                                                  self.body_idle_s)
            except TimeoutError:
                e = BodyTimeout(self.body_idle_s)
                await problem_response(408, str(e.detail), headers=e.headers)(
                    scope, receive, send)
                return
            if buffered is None:
                await self._refuse(scope, receive, send, limit)
                return
            receive = _replay(buffered, receive)
        received = 0
        started = False
        body_done = False

        async def counted() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body: waiting for a disconnect (streams) has no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_idle_s)
            except TimeoutError:
                raise BodyTimeout(self.body_idle_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # Raised where no handler turned it into a response (e.g. a form parser).
            if not started:
                await self._refuse(scope, receive, send, limit)
        except BodyTimeout as e:
            if not started:
                await problem_response(408, str(e.detail), headers=e.headers)(
                    scope, receive, send)

    @staticmethod
    async def _read_small(receive: Receive, limit: int) -> list[Message] | None:
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > limit:
                return None
            if not message.get("more_body", False):
                return messages

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        e = BodyTooLarge(limit)
        response: Any = problem_response(413, str(e.detail), e.errors, headers=e.headers)
        await response(scope, receive, send)


class SiteRoutes:
    """``/api/v1/sites/{site}/…`` is the site-scoped form of every ``/api/v1/…`` route.

    The path is rewritten before routing and the site is left in the request's
    state, where :func:`coverwatch.http.access.site_unit` picks it up; with
    exactly one site, the plain routes stay as aliases. ``GET /api/v1/sites``
    itself (the all-sites board) is not rewritten.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if path.startswith(SITE_PREFIX):
                site, sep, rest = path[len(SITE_PREFIX):].partition("/")
                if site and sep and rest:
                    scope = dict(scope)
                    scope["path"] = f"/api/v1/{rest}"
                    scope["raw_path"] = scope["path"].encode()
                    scope["state"] = {**scope.get("state", {}), "site": unquote(site)}
        await self.app(scope, receive, send)
