"""Distributed mode's change notification: PostgreSQL LISTEN on the writes of alerts and rules.

A trigger (migration 0016) sends ``NOTIFY coverwatch_changes, '<schema> <site>'`` in every
transaction that writes a site's alerts or rule versions; PostgreSQL delivers it at the
commit. A :class:`ChangeFeed` holds one connection of its own that LISTENs, from a thread
(a LISTENing connection waits on its socket, making no transactions), and hands the site
keys of its own schema to the event loop. When the connection drops, notifications may be
lost: the feed reconnects and says so (:meth:`ChangeFeed.lost`), and the node scans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

__all__ = ["CHANNEL", "ChangeFeed"]

log = logging.getLogger("coverwatch.server")

CHANNEL = "coverwatch_changes"


class ChangeFeed:
    """Site keys notified as changed, queued for the loop; see the module docstring."""

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.loop = loop
        self.changed: asyncio.Queue[str] = asyncio.Queue()
        self.connected = threading.Event()
        self._lost = True  # nothing heard yet: the first scan is the node's own
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="change-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def lost(self) -> bool:
        """Whether notifications may have been missed since the last call (a reconnect)."""
        lost, self._lost = self._lost, False
        return lost or not self.connected.is_set()

    def _main(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    schema = conn.execute("SELECT current_schema()").fetchone()
                    mine = str(schema[0]) if schema else "public"
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            where, _, site = note.payload.partition(" ")
                            if where == mine:
                                self.loop.call_soon_threadsafe(self.changed.put_nowait, site)
            except Exception as e:  # PostgreSQL away or failing over: listen again
                log.warning("change feed: %s; listening again", e)
            finally:
                self.connected.clear()
                self._lost = True
            with contextlib.suppress(Exception):
                self._stop.wait(1.0)
