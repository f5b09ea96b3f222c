"""Who hears of what a handler did: a small message bus for one site.

The wiring point subscribes the adapters (the live feed, the outbox, the bus
hooks, the briefing) to the happenings they care about; a handler's
happenings are handed to them in order, each subscriber's failure logged and
contained (one adapter cannot stop another hearing)."""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from coverwatch.domain.time import format_time
from coverwatch.server.feed import Feed
from coverwatch.server.happenings import (
    AlertChanged,
    CoverChanged,
    Happening,
    LateApplied,
    LevelRecorded,
)

__all__ = ["Subscribers", "subscribe_feed"]

log = logging.getLogger("coverwatch.server")

H = TypeVar("H")
Subscriber = Callable[[Any], Awaitable[None] | None]


class Subscribers:
    """Subscribers by happening type; :meth:`dispatch` hands each happening over."""

    def __init__(self) -> None:
        self._by_type: dict[type, list[Subscriber]] = defaultdict(list)

    def subscribe(self, kind: type[H], fn: Callable[[H], Awaitable[None] | None]) -> None:
        self._by_type[kind].append(fn)

    def publish_now(self, happenings: Iterable[Happening]) -> None:
        """Hand happenings to the synchronous subscribers only (from a worker thread)."""
        for h in happenings:
            for fn in self._by_type.get(type(h), ()):
                if not inspect.iscoroutinefunction(fn):
                    self._call(fn, h)

    async def dispatch(self, happenings: Iterable[Happening]) -> None:
        """Hand each happening, in order, to every subscriber of its type."""
        for h in happenings:
            for fn in self._by_type.get(type(h), ()):
                result = self._call(fn, h)
                if inspect.isawaitable(result):
                    try:
                        await result
                    except Exception:  # one adapter's failure must not silence the others
                        log.exception("%s failed on %s", _name(fn), type(h).__name__)

    @staticmethod
    def _call(fn: Subscriber, h: Happening) -> Awaitable[None] | None:
        try:
            return fn(h)
        except Exception:
            log.exception("%s failed on %s", _name(fn), type(h).__name__)
            return None


def _name(fn: Subscriber) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def subscribe_feed(subscribers: Subscribers, feed: Feed) -> None:
    """The dashboard's live feed: cover changes, alert states, levels recorded due."""

    def cover(h: CoverChanged) -> None:
        ch = h.change
        feed.publish({"type": ch.kind, "post": ch.post, "rule": ch.rule, "t": format_time(ch.t),
                      "lapse_start": format_time(ch.lapse_start), "count": ch.count})

    def alert(h: AlertChanged) -> None:
        feed.publish({"type": "alert-state", "alert": h.alert.to_record()})

    def level(h: LevelRecorded) -> None:
        feed.publish({"type": "escalation", "alert": h.alert.to_record(), "level": h.level,
                      "targets": list(h.targets)})

    def late(h: LateApplied) -> None:
        msg = h.message
        log.info("late %s event of %s at %s (received %s) applied live at %s",
                 msg["kind"], msg["subject"], msg["time"], msg["received"], msg["applied"])
        feed.publish(msg)

    subscribers.subscribe(CoverChanged, cover)
    subscribers.subscribe(AlertChanged, alert)
    subscribers.subscribe(LevelRecorded, level)
    subscribers.subscribe(LateApplied, late)
