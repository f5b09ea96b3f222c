"""Slow clients are closed: a deadline for a request's head (uvicorn's h11 protocol).

uvicorn times out an idle keep-alive connection, but not a client that opens a
connection and sends its request head a byte at a time (or never finishes it):
such connections stayed open for ever, each holding a socket and a protocol
object (3 000 of 3 000 still open after 40 s). :class:`DeadlineH11Protocol`
gives every request head :data:`HEADER_TIMEOUT_S` seconds from the moment the
server starts waiting for it (the connection opened, or the previous response
ended); a head not complete by then closes the connection. The body has its
own idle deadline in :class:`coverwatch.http.limits.RequestLimits`.
``coverwatch serve`` runs uvicorn with this protocol (docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEADER_TIMEOUT_S", "DeadlineH11Protocol"]

#: How long a client may take to send a request's head (a real one takes milliseconds).
HEADER_TIMEOUT_S = 10.0

log = logging.getLogger("coverwatch.server")


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for every request head."""

    header_timeout_s = HEADER_TIMEOUT_S
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _head_late(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        # Still waiting for (the rest of) a request head: the client is too slow.
        if self.conn.their_state is h11.IDLE:
            log.debug("closing a connection whose request head took over %.0f s",
                      self.header_timeout_s)
            self.transport.close()
