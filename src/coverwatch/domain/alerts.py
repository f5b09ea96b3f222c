"""Alert supervision: the alert lifecycle and the escalation policy (pure).

An alert is raised when a lapse outlives its rule's grace period. A person must
own it: someone acknowledges it (who, when, note), cover is restored (resolved,
at the event time cover came back) and a supervisor closes it (who, when).

States and the transitions allowed::

    open ──acknowledge──> acknowledged ──resolve──> resolved ──close──> closed
      └──────────────────resolve──────────────────────┘

Decisions (a careful control room's view):

* An alert resolved before anyone acknowledged it stays visible
  (``needs_acknowledgement``) until a supervisor acknowledges and/or closes it.
  It may be acknowledged while resolved (the state stays ``resolved``).
  Closing such an alert records the closer's acknowledgement too (same user,
  time and note), so every closed alert has an acknowledgement on record.
* Only a resolved alert can be closed: while cover is still lapsed the alert
  is live and cannot be put away.
* Escalation runs only while an alert is ``open`` (cover lapsed and nobody has
  acknowledged). Acknowledging stops it and makes the acknowledger the owner;
  restoring cover stops it too, since paging more people about a finished
  lapse is noise -- the alert stays on the board until closed instead.
* Each escalation step is emitted once per (alert, level): ``tick`` emits every
  level that became due since the last tick, in order, even across a jump in
  time. The step reached is kept on the alert (``escalated_level``) and in its
  record, so a book rebuilt from storage does not repeat steps already emitted
  (delivery is at-least-once only if the caller persists after ``tick``).

Escalation targets are strings: ``"role:<name>"``, ``"user:<name>"`` or a
notification URL (anything containing ``://``). URLs are handed to the notifier
unchanged; ``signed+https://host/path`` (and ``signed+http://`` for local
tests) means "POST a JSON body signed with the shared webhook secret", any
other scheme is an Apprise URL (``mailto://``, ``json://``, ``slack://`` ...).

``kind`` is ``"lapse"`` for cover lapses; other kinds (e.g. ``"unbriefed"``)
use the same lifecycle, with ``lapse_start`` meaning "when the condition began".
Alarms from an officer's device (``"sos"``, ``"fall"``) come first on the board
(:func:`alert_priority`) and have no automatic end: a person closes them, with a
note, which also resolves them. ``details`` carries facts a kind needs shown
(an alarm's officer, event and arrival times, last known position).
Times are int microseconds since the Unix epoch, always passed in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coverwatch.domain.time import format_duration, seconds_to_us
from coverwatch.errors import CoverwatchError

__all__ = [
    "DEVICE_ALARM_KINDS",
    "DIRECT_KINDS",
    "SIGNED_WEBHOOK_SCHEMES",
    "Alert",
    "AlertLifecycleError",
    "AlertState",
    "Escalation",
    "EscalationLevel",
    "EscalationPolicy",
    "UnknownAlertError",
    "alert_id_for",
    "alert_priority",
    "format_duration",
    "parse_target",
]

# Alert kinds raised by an officer's device; a person ends them, nothing else does.
DEVICE_ALARM_KINDS = frozenset({"sos", "fall"})
# Lower comes first on the board; kinds not listed come after these.
_PRIORITY = {"sos": 0, "fall": 1, "lapse": 5, "device-silent": 6, "tour": 6, "unbriefed": 8}


def alert_priority(kind: str) -> int:
    """Where alerts of ``kind`` go on the board: 0 (an SOS) is the most urgent."""
    return _PRIORITY.get(kind, 7)


# URL schemes that mean "signed JSON webhook" rather than an Apprise URL.
SIGNED_WEBHOOK_SCHEMES = ("signed+https", "signed+http")
# Alerts about the server itself: sent once to supervisors and admins, never
# escalated through the site's policy (whose targets may be what failed).
DIRECT_KINDS = frozenset({"system", "notification-failure"})


class AlertLifecycleError(CoverwatchError):
    """An alert was asked to make a transition its state does not allow."""


class UnknownAlertError(CoverwatchError):
    """No alert with the given id is in the book."""


class AlertState(StrEnum):
    """Where an alert is in its lifecycle."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"


def parse_target(target: str) -> tuple[str, str]:
    """Split an escalation target into ``(kind, value)``.

    ``kind`` is ``"role"``, ``"user"`` or ``"url"``. Raises ``ValueError`` on
    anything else (an empty name, a bare word, a URL without a scheme).
    """
    if "://" in target:
        scheme, _, rest = target.partition("://")
        if not scheme or not rest or not scheme[0].isalpha():
            raise ValueError(f"not a notification URL: {target!r}")
        return "url", target
    kind, sep, name = target.partition(":")
    if sep and kind in ("role", "user") and name.strip() and name == name.strip():
        return kind, name
    raise ValueError(
        f"escalation target {target!r} is not 'role:<name>', 'user:<name>' or a URL"
    )


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    """Notify ``notify`` once the alert has been unowned for ``after_s`` seconds."""

    after_s: float
    notify: tuple[str, ...]

    def __post_init__(self) -> None:
        if not math.isfinite(self.after_s) or self.after_s < 0:
            raise ValueError(f"escalation after_s must be a finite number >= 0: {self.after_s!r}")
        if isinstance(self.notify, str):
            # A bare string would iterate as characters; refuse it loudly.
            raise ValueError("escalation notify must be a tuple of targets, not a string")
        if not self.notify:
            raise ValueError("an escalation level must notify at least one target")
        for target in self.notify:
            parse_target(target)

    @property
    def after_us(self) -> int:
        """The delay in microseconds after the alert."""
        return seconds_to_us(self.after_s)


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Who to tell, and when, while an alert stays open and unacknowledged.

    Level delays count from the alert time (the end of the grace period) and
    must not decrease. Level 0 usually has ``after_s=0``: tell the supervisor
    at once. A policy with no levels records alerts but notifies nobody.
    """

    levels: tuple[EscalationLevel, ...]

    def __post_init__(self) -> None:
        previous = 0.0
        for index, level in enumerate(self.levels):
            if level.after_s < previous:
                raise ValueError(
                    f"escalation level {index} (after {level.after_s} s) is earlier than "
                    f"level {index - 1} (after {previous} s)"
                )
            previous = level.after_s

    def level_due(self, alert_at_us: int, now_us: int) -> int:
        """The highest level whose delay has passed at ``now_us``; -1 if none."""
        due = -1
        for index, level in enumerate(self.levels):
            if alert_at_us + level.after_us <= now_us:
                due = index
            else:
                break
        return due


def alert_id_for(kind: str, post: str, rule: str, lapse_start: int) -> str:
    """The stable id of the alert for one lapse (same key, same id, across restarts)."""
    key = "\x1f".join((kind, post, rule, str(lapse_start)))
    return f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@dataclass(slots=True)
class Alert:
    """One alert and everything a supervisor did about it.

    ``count`` and ``need`` are the officers counting and required when the
    alert was raised. ``escalated_level`` is the highest escalation step
    emitted so far (-1: none). ``acknowledged_by`` is the owner.
    """

    id: str
    kind: str
    post: str
    rule: str
    lapse_start: int
    alert_at: int
    count: int
    need: int
    state: AlertState = AlertState.OPEN
    escalated_level: int = -1
    acknowledged_by: str | None = None
    acknowledged_at: int | None = None
    acknowledgement_note: str = ""
    resolved_at: int | None = None
    closed_by: str | None = None
    closed_at: int | None = None
    close_note: str = ""
    # What a system or notification-failure alert says, and the alert it is about.
    detail: str = ""
    about: str | None = None
    details: Mapping[str, Any] | None = None

    @property
    def priority(self) -> int:
        """0 is the most urgent (see :func:`alert_priority`)."""
        return alert_priority(self.kind)

    @property
    def key(self) -> tuple[str, str, int, str]:
        """``(post, rule, lapse_start, kind)``: what makes two alerts the same."""
        return (self.post, self.rule, self.lapse_start, self.kind)

    @property
    def owner(self) -> str | None:
        """Who acknowledged the alert and so owns it, if anyone has."""
        return self.acknowledged_by

    @property
    def needs_acknowledgement(self) -> bool:
        """True until someone has acknowledged the alert (even if cover is back)."""
        return self.acknowledged_by is None

    @property
    def escalating(self) -> bool:
        """True while escalation runs: open, so lapsed and unacknowledged."""
        return self.state is AlertState.OPEN

    def acknowledge(self, user: str, note: str, now: int) -> None:
        """Take ownership: records who, when and note, and stops escalation."""
        _need_user(user)
        if self.acknowledged_by is not None:
            raise AlertLifecycleError(
                f"alert {self.id} was already acknowledged by {self.acknowledged_by}"
            )
        if self.state is AlertState.CLOSED:
            raise AlertLifecycleError(f"alert {self.id} is closed")
        self.acknowledged_by = user
        self.acknowledged_at = now
        self.acknowledgement_note = note
        if self.state is AlertState.OPEN:
            self.state = AlertState.ACKNOWLEDGED

    def resolve(self, end: int) -> None:
        """Cover was restored at event time ``end``."""
        if self.state not in (AlertState.OPEN, AlertState.ACKNOWLEDGED):
            raise AlertLifecycleError(f"alert {self.id} is {self.state}, it cannot be resolved")
        if end < self.lapse_start:
            raise AlertLifecycleError(
                f"alert {self.id}: cover restored at {end}, before the lapse began "
                f"({self.lapse_start})"
            )
        self.resolved_at = end
        self.state = AlertState.RESOLVED

    def close(self, user: str, note: str, now: int) -> None:
        """Put a resolved alert away; also acknowledges it if nobody had.

        A device alarm (sos, fall) has no automatic end: closing it resolves it now.
        """
        _need_user(user)
        if self.kind in DEVICE_ALARM_KINDS and self.state in (AlertState.OPEN,
                                                               AlertState.ACKNOWLEDGED):
            self.resolved_at = max(now, self.lapse_start)
            self.state = AlertState.RESOLVED
        if self.state is not AlertState.RESOLVED:
            raise AlertLifecycleError(
                f"alert {self.id} is {self.state}; only a resolved alert can be closed"
            )
        if self.acknowledged_by is None:
            self.acknowledged_by = user
            self.acknowledged_at = now
            self.acknowledgement_note = note
        self.closed_by = user
        self.closed_at = now
        self.close_note = note
        self.state = AlertState.CLOSED

    def to_record(self) -> dict[str, Any]:
        """A plain dict of JSON-friendly values, for storage."""
        return {
            "id": self.id,
            "kind": self.kind,
            "post": self.post,
            "rule": self.rule,
            "lapse_start": self.lapse_start,
            "alert_at": self.alert_at,
            "count": self.count,
            "need": self.need,
            "state": self.state.value,
            "escalated_level": self.escalated_level,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
            "acknowledgement_note": self.acknowledgement_note,
            "resolved_at": self.resolved_at,
            "closed_by": self.closed_by,
            "closed_at": self.closed_at,
            "close_note": self.close_note,
            "detail": self.detail,
            "about": self.about,
            "priority": self.priority,
            "details": None if self.details is None else dict(self.details),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Alert:
        """Rebuild an alert from :meth:`to_record` output; checks it is consistent."""
        try:
            alert = cls(
                id=str(record["id"]),
                kind=str(record["kind"]),
                post=str(record["post"]),
                rule=str(record["rule"]),
                lapse_start=int(record["lapse_start"]),
                alert_at=int(record["alert_at"]),
                count=int(record["count"]),
                need=int(record["need"]),
                state=AlertState(record["state"]),
                escalated_level=int(record.get("escalated_level", -1)),
                acknowledged_by=_opt_str(record.get("acknowledged_by")),
                acknowledged_at=_opt_int(record.get("acknowledged_at")),
                acknowledgement_note=str(record.get("acknowledgement_note") or ""),
                resolved_at=_opt_int(record.get("resolved_at")),
                closed_by=_opt_str(record.get("closed_by")),
                closed_at=_opt_int(record.get("closed_at")),
                close_note=str(record.get("close_note") or ""),
                detail=str(record.get("detail") or ""),
                about=_opt_str(record.get("about")),
                details=_opt_details(record.get("details")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AlertLifecycleError(f"bad alert record: {exc!r}") from None
        alert._check_consistent()
        return alert

    def _check_consistent(self) -> None:
        acked = self.acknowledged_by is not None
        problems = []
        if acked != (self.acknowledged_at is not None):
            problems.append("acknowledged_by and acknowledged_at disagree")
        if self.state is AlertState.OPEN and acked:
            problems.append("open but acknowledged")
        if self.state is AlertState.ACKNOWLEDGED and not acked:
            problems.append("acknowledged state without an acknowledgement")
        resolved = self.state in (AlertState.RESOLVED, AlertState.CLOSED)
        if resolved != (self.resolved_at is not None):
            problems.append("state and resolved_at disagree")
        closed = self.state is AlertState.CLOSED
        if closed != (self.closed_by is not None) or closed != (self.closed_at is not None):
            problems.append("state and closed_by/closed_at disagree")
        if closed and not acked:
            problems.append("closed without an acknowledgement")
        if problems:
            raise AlertLifecycleError(f"bad alert record {self.id}: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Escalation:
    """One escalation step now due: tell ``targets`` about alert ``alert_id``.

    ``due_at`` is when the level fell due; ``at`` is the ``now`` of the tick
    that emitted it (later than ``due_at`` after a jump in time). The alert's
    facts are copied so the notifier needs nothing else.
    """

    alert_id: str
    level: int
    targets: tuple[str, ...]
    due_at: int
    at: int
    kind: str
    post: str
    rule: str
    lapse_start: int
    alert_at: int
    count: int
    need: int


def _need_user(user: str) -> None:
    if not user or not user.strip():
        raise AlertLifecycleError("a user must be named")


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_details(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError("details must be a mapping")
    return dict(value)
