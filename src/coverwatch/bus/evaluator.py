"""What a worker feeds: the evaluator interface, and a reference evaluator.

A worker owns a site, restores its evaluator from the checkpoint and feeds it
the site's messages in stream order: runs of events through :meth:`take`,
each watermark through :meth:`advance`, each control message (new rules for the
site) through :meth:`control`. All return *outputs* (for the cover
engine, its cover changes and the keys of late events), which the worker hands
to its output sink before it checkpoints. After a takeover the new owner may
produce again the outputs of the messages after the last checkpoint; they are
identical (the evaluation is a function of the stream alone), so a sink keyed
by what the output is about (an alert's post, rule and lapse start, as in
PostgreSQL today) records each once.

``server/buscover.py`` adapts the live cover engine to this interface.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from coverwatch.bus.log import BusMessage

__all__ = ["EvaluatorFactory", "EventTally", "SiteEvaluator"]


class SiteEvaluator(Protocol):
    """One site's evaluation, driven only by the site's stream."""

    def take(self, events: Sequence[BusMessage]) -> Sequence[Any]:
        """Events in stream order (those earlier than the horizon are late)."""
        ...

    def advance(self, horizon_us: int) -> Sequence[Any]:
        """A watermark: every event earlier than ``horizon_us`` has been taken."""
        ...

    def control(self, data: Mapping[str, Any]) -> Sequence[Any]:
        """A control message (e.g. new rules), at its point of the stream."""
        ...

    def snapshot(self) -> bytes:
        """The state to resume from (restored by the factory)."""
        ...


# (site, checkpointed state or None for a fresh start) -> evaluator
EvaluatorFactory = Callable[[str, bytes | None], SiteEvaluator]


class EventTally:
    """A reference evaluator for tests and benchmarks: it counts and fingerprints.

    Its state says how many events it has taken and a running hash of their
    keys in order, so an event lost or taken twice changes the state. At each
    watermark it outputs ``(horizon, events, late, digest)``.
    """

    def __init__(self, site: str, state: bytes | None = None) -> None:
        self.site = site
        if state is None:
            self.events = self.late = 0
            self.horizon = -(2**62)
            self.digest = ""
        else:
            s = orjson.loads(state)
            self.events, self.late = int(s["events"]), int(s["late"])
            self.horizon, self.digest = int(s["horizon"]), str(s["digest"])

    def take(self, events: Sequence[BusMessage]) -> Sequence[Any]:
        late = []
        digest = self.digest
        for m in events:  # a chain, so batch boundaries do not matter
            digest = hashlib.blake2b(f"{digest}/{m.key}".encode(), digest_size=16).hexdigest()
            if int(m.data.get("t_us", 0)) < self.horizon:
                late.append(m.key)
        self.events += len(events)
        self.late += len(late)
        self.digest = digest
        return []

    def advance(self, horizon_us: int) -> Sequence[Any]:
        if horizon_us <= self.horizon:
            return []
        self.horizon = horizon_us
        return [(horizon_us, self.events, self.late, self.digest)]

    def control(self, data: Mapping[str, Any]) -> Sequence[Any]:
        return [("control", dict(data))]

    def snapshot(self) -> bytes:
        return orjson.dumps({"events": self.events, "late": self.late,
                             "horizon": self.horizon, "digest": self.digest})
