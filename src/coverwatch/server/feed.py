"""The live feed: fan-out of live messages (cover changes, alert states) to the
dashboard's SSE subscribers; a slow subscriber drops old messages, never the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

__all__ = ["Feed"]


class Feed:
    """Fan-out of live messages to SSE subscribers; slow ones drop old messages."""

    def __init__(self, maxsize: int = 1000) -> None:
        self._queues: set[asyncio.Queue[bytes]] = set()
        self._maxsize = maxsize
        self._loop: asyncio.AbstractEventLoop | None = None

    def publish(self, message: Mapping[str, Any]) -> None:
        """Queue a message for every subscriber; safe to call from a worker thread."""
        if not self._queues:
            return
        data = orjson.dumps(message)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        # asyncio queues belong to their loop: hand over from other threads.
        if self._loop is not None and running is not self._loop:
            self._loop.call_soon_threadsafe(self._deliver, data)
        else:
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        for q in list(self._queues):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(data)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[bytes]]:
        self._loop = asyncio.get_running_loop()
        q: asyncio.Queue[bytes] = asyncio.Queue(self._maxsize)
        self._queues.add(q)
        try:
            yield q
        finally:
            self._queues.discard(q)

    @property
    def subscribers(self) -> int:
        return len(self._queues)
