"""The request's scheme as a trusted reverse proxy reports it.

Behind a proxy that terminates TLS the server itself speaks plain HTTP, so the
session cookie would go out without ``Secure``. :class:`ForwardedProto` believes
``X-Forwarded-Proto`` only from a peer in ``--trusted-proxies`` (never from a
client, which could forge it) and sets the request's scheme from the nearest
proxy's value; the login route then marks the cookie ``Secure`` for an https
request (see :func:`cookie_is_secure`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from coverwatch.http.limits import parse_networks

__all__ = ["ForwardedProto", "cookie_is_secure"]


class ForwardedProto:
    """ASGI middleware: ``X-Forwarded-Proto: https`` from a trusted proxy makes the
    request's scheme https. Install it outside the middleware that rewrites the
    client address, so that it sees the real peer."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    def _trusted(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and self.trusted and client and self._trusted(client[0]):
            values = [v.decode("latin-1") for k, v in scope.get("headers", ())
                      if k.lower() == b"x-forwarded-proto"]
            if values:
                # The proxy nearest to us appends last; anything before it may be forged.
                proto = ",".join(values).split(",")[-1].strip().lower()
                if proto in ("http", "https"):
                    scope = {**scope, "scheme": proto}
        await self.app(scope, receive, send)


def cookie_is_secure(request: Request, always: bool) -> bool:
    """Whether a cookie set in answer to ``request`` is ``Secure``: always when
    ``--secure-cookies`` says so, else when the request came over https (TLS here,
    or a trusted proxy that says so)."""
    return always or request.url.scheme == "https"
