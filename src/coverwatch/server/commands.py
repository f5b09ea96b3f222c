"""What an adapter asks a site to change: commands, each handled by one function in
:mod:`coverwatch.server.handlers.alerts` (cosmicpython's message bus: a command goes
to its handler, which changes the book under the unit's lock, stores what it decided
and hands the happenings to the subscribers).

The outbox, the briefing, the tours and the dead-man check hold no unit: they are
given one :data:`Execute` callable and send these through it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coverwatch.domain.alerts import Alert, Escalation

__all__ = ["Command", "Done", "EscalateNow", "Execute", "KeepAlerts", "RaiseDirect",
           "ResolveDirect", "WantedAlert"]


@dataclass(frozen=True, slots=True)
class EscalateNow:
    """A level reached nobody: the alert's next level falls due now."""

    alert_id: str
    failed_level: int


@dataclass(frozen=True, slots=True)
class RaiseDirect:
    """Raise an alert about supervision itself (``system``, ``notification-failure``)."""

    kind: str
    post: str
    rule: str
    detail: str
    about: str | None = None


@dataclass(frozen=True, slots=True)
class ResolveDirect:
    """A direct alert's cause has gone: resolve it."""

    alert_id: str
    why: str


@dataclass(frozen=True, slots=True)
class WantedAlert:
    """An alert that should be raised (once), and when it resolves if that is known."""

    post: str
    rule: str
    lapse_start: int
    alert_at: int
    details: Mapping[str, Any] | None = None
    resolved_at: int | None = None


@dataclass(frozen=True, slots=True)
class KeepAlerts:
    """Bring one kind of alert in line with what is wanted now (the briefing's
    ``unbriefed``, the tours' ``tour``): raise the wanted ones not raised yet, resolve
    a wanted one at its ``resolved_at``, and with ``resolve_unwanted_at`` resolve the
    live ones no longer wanted."""

    actor: str
    kind: str
    wanted: tuple[WantedAlert, ...]
    resolve_unwanted_at: int | None = None


Command = EscalateNow | RaiseDirect | ResolveDirect | KeepAlerts


@dataclass(frozen=True, slots=True)
class Done:
    """What a command did: the alerts it touched, as it left them, and (EscalateNow)
    the level now due, or None."""

    alerts: tuple[Alert, ...] = field(default=())
    step: Escalation | None = None


Execute = Callable[[Command], Awaitable[Done]]
