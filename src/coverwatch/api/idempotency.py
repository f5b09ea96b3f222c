"""The ``Idempotency-Key`` request header (IETF draft-ietf-httpapi-idempotency-key-header)
for actions a client may retry: acknowledging or closing an alert, acknowledging an
incident, sending an officer.

A request that carries a key is done once. Its answer (status and JSON body) is kept in
the server's memory for ``KEEP_S``, for that site and caller. A retry with the same key and
the same request (method, path and body, as parsed) gets that answer again, with
``Idempotent-Replayed: true``, and nothing is done twice. The same key sent with a different
request is refused with 422; a retry that arrives while the first request is still
running is refused with 409. An error answer is not kept, so a retry after an error is
tried again. Requests without the header work as before.

The answers are kept by the app (``app.state``), per site: :class:`Replies`.

The value is a Structured Field string (``"…"``, RFC 8941), as the draft asks; a bare
token (``Idempotency-Key: 4f1c…``) is accepted too, since many clients send one.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from coverwatch.http.access import Principal
from coverwatch.server.unit import SiteUnit

__all__ = ["HEADER", "KEEP_S", "IdempotencyKey", "Replies", "once", "parse_key"]

HEADER = "Idempotency-Key"
KEEP_S = 24 * 3600.0  # how long a key's answer is kept
MAX_KEYS = 10_000  # per site; the oldest go first
MAX_LEN = 255
IdempotencyKey = Annotated[str | None, Header(
    alias=HEADER, description="Makes a retry safe: the same key and request is done once "
                              "(draft-ietf-httpapi-idempotency-key-header); kept 24 hours.")]


@dataclass
class _Entry:
    fingerprint: str
    at: float
    answer: tuple[int, Any] | None = None  # None while the first request runs


@dataclass
class _Keys:
    entries: OrderedDict[tuple[str, str], _Entry] = field(default_factory=OrderedDict)

    def drop_old(self, now: float) -> None:
        while self.entries:
            _, first = next(iter(self.entries.items()))
            if len(self.entries) <= MAX_KEYS and now - first.at < KEEP_S:
                return
            self.entries.popitem(last=False)


class Replies:
    """The answers kept for retries, per site: owned by the app (``app.state.replies``),
    so they live and go with it."""

    def __init__(self) -> None:
        self._by_site: dict[str, _Keys] = {}

    def of(self, site: str) -> _Keys:
        keys = self._by_site.get(site)
        if keys is None:
            keys = self._by_site[site] = _Keys()
        return keys


def _keys_of(request: Request, svc: SiteUnit) -> _Keys:
    replies: Replies | None = getattr(request.app.state, "replies", None)
    if replies is None:  # an app built without the wiring point (tests)
        replies = request.app.state.replies = Replies()
    return replies.of(svc.site.id)


def parse_key(values: list[str]) -> str | None:
    """The key from the header's values (None without one); 400 when it is malformed."""
    if not values:
        return None
    if len(values) > 1:
        raise HTTPException(400, f"{HEADER}: send the header once (it was sent "
                                 f"{len(values)} times)")
    raw = values[0].strip()
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise HTTPException(400, f"{HEADER}: a quoted key must end with a closing quote")
        inner, key, i = raw[1:-1], [], 0
        while i < len(inner):
            c = inner[i]
            if c == "\\":
                if i + 1 >= len(inner) or inner[i + 1] not in '"\\':
                    raise HTTPException(400, f"{HEADER}: only \\\" and \\\\ may be escaped "
                                             "in a quoted key")
                c, i = inner[i + 1], i + 1
            elif c == '"':
                raise HTTPException(400, f"{HEADER}: a quote inside the key must be "
                                         "escaped as \\\"")
            key.append(c)
            i += 1
        value = "".join(key)
    else:
        value = raw
        if any(c in value for c in ' ",;\\'):
            raise HTTPException(400, f"{HEADER}: a key with spaces, commas, semicolons, "
                                     "quotes or backslashes must be a quoted string")
    if not value:
        raise HTTPException(400, f"{HEADER}: the key is empty")
    if len(value) > MAX_LEN:
        raise HTTPException(400, f"{HEADER}: the key is {len(value)} characters long, "
                                 f"at most {MAX_LEN} are allowed")
    if any(not (" " <= c <= "~") for c in value):
        raise HTTPException(400, f"{HEADER}: the key must be printable ASCII")
    return value


def _fingerprint(request: Request, body: BaseModel | None) -> str:
    data = body.model_dump(mode="json") if body is not None else None
    text = orjson.dumps([request.method, request.url.path, data], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


async def once(request: Request, svc: SiteUnit, who: Principal, body: BaseModel | None,
               act: Callable[[], Awaitable[Any]], status: int = 200) -> Any:
    """Run ``act`` once per ``Idempotency-Key`` (see the module's docstring); without the
    header, just run it."""
    key = parse_key(request.headers.getlist(HEADER))
    if key is None:
        return await act()
    keys = _keys_of(request, svc)
    now = time.monotonic()
    keys.drop_old(now)
    fingerprint = _fingerprint(request, body)
    slot = (who.name, key)
    entry = keys.entries.get(slot)
    if entry is not None:
        if entry.fingerprint != fingerprint:
            raise HTTPException(422, f"{HEADER} {key!r} was already used for a different "
                                     f"request; send a new key for {request.method} "
                                     f"{request.url.path} with this body")
        if entry.answer is None:
            raise HTTPException(409, f"{HEADER} {key!r}: the first request with this key is "
                                     "still being done; retry in a moment")
        code, content = entry.answer
        return JSONResponse(content, status_code=code,
                            headers={"Idempotent-Replayed": "true"})
    entry = keys.entries[slot] = _Entry(fingerprint, now)
    try:
        content = await act()
    except BaseException:
        keys.entries.pop(slot, None)  # an error is not kept: a retry tries again
        raise
    entry.answer = (status, content)
    return JSONResponse(content, status_code=status)
