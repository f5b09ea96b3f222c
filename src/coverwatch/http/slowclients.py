"""Slow and oversized request heads are refused (uvicorn's httptools protocol).

uvicorn times out an idle keep-alive connection, but not a client that opens a
connection and sends its request head a byte at a time (or never finishes it):
such connections stayed open for ever, each holding a socket and a protocol
object (3 000 of 3 000 still open after 40 s). :class:`DeadlineHttpToolsProtocol`
gives every request head :data:`HEADER_TIMEOUT_S` seconds from the moment the
server starts waiting for it (the connection opened, or the previous response
ended); a head not complete by then closes the connection. The body has its
own idle deadline in :class:`coverwatch.http.limits.RequestLimits`.

httptools (unlike h11, which refuses a head that is still incomplete after 16 KiB)
buffers a header of any length, so a head still incomplete after
:data:`MAX_HEAD_BYTES` is answered 400 ``Invalid HTTP request received.`` and the
connection closed, as h11 did. ``coverwatch serve`` runs uvicorn with this
protocol (docs/security.md).

Cheap per request, because a phone sends one request per fix (issue 25): the
deadlines (this one and uvicorn's keep-alive) are checked by one sweep a second over
the open connections instead of a timer armed and cancelled per request, and a
response's head is written together with its body (one send, not two) when the
body follows at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = ["HEADER_TIMEOUT_S", "MAX_HEAD_BYTES", "DeadlineHttpToolsProtocol"]

#: How long a client may take to send a request's head (a real one takes milliseconds).
HEADER_TIMEOUT_S = 10.0
#: The most an incomplete request head may hold (h11's limit, which uvicorn used before).
MAX_HEAD_BYTES = 16 * 1024
#: How often the deadlines are checked (a deadline may be passed by up to this much).
SWEEP_S = 1.0

log = logging.getLogger("coverwatch.server")


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit for every request head."""

    header_timeout_s = HEADER_TIMEOUT_S
    max_head_bytes = MAX_HEAD_BYTES
    _waiting_since: float | None = None  # loop time the wait for a head began; None: no wait
    _idle = False  # nothing received since the last response (the keep-alive timeout applies)
    _in_head = False  # a request head has begun and is not complete yet
    _head_bytes = 0  # bytes received for it so far
    _fed_body = 0  # body bytes the parser handed on during the current read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        _start_sweep(self.loop, self.server_state)

    def data_received(self, data: bytes) -> None:
        self._idle = False
        self._fed_body = 0
        super().data_received(data)
        if self._in_head and self.parser is not None and not self.transport.is_closing():
            # Bytes of an earlier message in the same read count too (at most one read).
            self._head_bytes += len(data) - self._fed_body
            if self._head_bytes > self.max_head_bytes:
                self._in_head = False
                msg = "Invalid HTTP request received."
                self.logger.warning("%s (a request head over %d bytes)", msg,
                                    self.max_head_bytes)
                self.send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._waiting_since = None
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a new request (not an upgrade)
            self.cycle.transport = _HeadWithBody(  # type: ignore[assignment]
                self.transport, self.loop)

    def on_body(self, body: bytes) -> None:
        self._fed_body += len(body)
        super().on_body(body)

    def on_response_complete(self) -> None:
        # uvicorn's, with the keep-alive timer left to the sweep.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined request already has its head: start it
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._waiting_since = self.loop.time()
            self._idle = True

    def check_deadlines(self, now: float) -> None:
        """Close the connection if the head it owes is overdue (or it idled too long)."""
        since = self._waiting_since
        if since is None or self.transport is None or self.transport.is_closing():
            return
        if self._idle and now - since > self.timeout_keep_alive:
            self.transport.close()  # uvicorn's keep-alive timeout
        elif now - since > self.header_timeout_s:
            log.debug("closing a connection whose request head took over %.0f s",
                      self.header_timeout_s)
            self.transport.close()


def _start_sweep(loop: asyncio.AbstractEventLoop, state: ServerState) -> None:
    if not getattr(state, "_cw_sweeping", False):
        state._cw_sweeping = True  # type: ignore[attr-defined]
        loop.call_later(SWEEP_S, _sweep, loop, state)


def _sweep(loop: asyncio.AbstractEventLoop, state: ServerState) -> None:
    now = loop.time()
    for connection in list(state.connections):
        if isinstance(connection, DeadlineHttpToolsProtocol):
            connection.check_deadlines(now)
    if state.connections:
        loop.call_later(SWEEP_S, _sweep, loop, state)
    else:  # started again by the next connection
        state._cw_sweeping = False  # type: ignore[attr-defined]


class _HeadWithBody:
    """A response's transport that holds its head back until the body joins it (one send
    instead of two); held no longer than the current turn of the event loop, so a
    streamed response's head still leaves at once."""

    __slots__ = ("_held", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif not self._started:
            self._started = True
            self._held = data
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def _flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
