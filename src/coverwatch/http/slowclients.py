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
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HEADER_TIMEOUT_S", "MAX_HEAD_BYTES", "DeadlineHttpToolsProtocol"]

#: How long a client may take to send a request's head (a real one takes milliseconds).
HEADER_TIMEOUT_S = 10.0
#: The most an incomplete request head may hold (h11's limit, which uvicorn used before).
MAX_HEAD_BYTES = 16 * 1024

log = logging.getLogger("coverwatch.server")


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit for every request head."""

    header_timeout_s = HEADER_TIMEOUT_S
    max_head_bytes = MAX_HEAD_BYTES
    _head_deadline: asyncio.TimerHandle | None = None
    _in_head = False  # a request head has begun and is not complete yet
    _head_bytes = 0  # bytes received for it so far
    _fed_body = 0  # body bytes the parser handed on during the current feed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request already has its head; otherwise wait for the next one.
        if not self.transport.is_closing() and not self._queued():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
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
        self._disarm()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._fed_body += len(body)
        super().on_body(body)

    def _queued(self) -> bool:
        """Whether a request whose head is complete is running or waiting."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _head_late(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self._queued():
            return
        # Still waiting for (the rest of) a request head: the client is too slow.
        log.debug("closing a connection whose request head took over %.0f s",
                  self.header_timeout_s)
        self.transport.close()
