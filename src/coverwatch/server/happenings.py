"""What a handler did, for the adapters that subscribe to it.

The handlers (:mod:`coverwatch.server.handlers`) change a site's state and
return these; :mod:`coverwatch.server.subscribers` hands each to the feed, the
outbox, the bus or the briefing. A handler never calls an adapter to tell it
something happened."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coverwatch.domain.alerts import Alert, Escalation
from coverwatch.engine import CoverChange
from coverwatch.formats.sitefile import SiteDocument

__all__ = ["AlarmsStoredHere", "AlertChanged", "AlertSettled", "CoverChanged", "DirectRaised",
           "FixesStored", "Happening", "LateApplied", "LevelRecorded", "LevelsDue", "SiteAdopted",
           "Ticked"]


@dataclass(frozen=True, slots=True)
class CoverChanged:
    """The engine saw a post's cover change (an alert's moment, a lapse ending, …)."""

    change: CoverChange


@dataclass(frozen=True, slots=True)
class AlertChanged:
    """An alert was raised, resolved, acknowledged or closed, and stored so."""

    alert: Alert


@dataclass(frozen=True, slots=True)
class LevelRecorded:
    """An escalation level was recorded as due (whether anyone was reached is the
    deliveries' to say)."""

    alert: Alert
    level: int
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LevelsDue:
    """Escalation steps recorded as due: the outbox sends them."""

    steps: tuple[Escalation, ...]


@dataclass(frozen=True, slots=True)
class AlertSettled:
    """An alert ended or a person took it: its failed notices are settled."""

    alert: Alert


@dataclass(frozen=True, slots=True)
class DirectRaised:
    """An alert about supervision itself was raised: the outbox sends it once."""

    alert: Alert


@dataclass(frozen=True, slots=True)
class LateApplied:
    """A late state event was applied live at the horizon (the message says when)."""

    message: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class FixesStored:
    """Device fixes were committed at a site with ``duty_from_devices`` (the briefing may
    put their officers on duty)."""

    fixes: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class AlarmsStoredHere:
    """Device alarms this node stored: in distributed mode it sends their first levels."""

    alert_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SiteAdopted:
    """A new site file is in force."""

    doc: SiteDocument


@dataclass(frozen=True, slots=True)
class Ticked:
    """The ticker stepped at ``at`` (wall clock): time-bound work (shelves ending) is due."""

    at: int


Happening = (CoverChanged | AlertChanged | LevelRecorded | LevelsDue | AlertSettled
             | DirectRaised | LateApplied | FixesStored | AlarmsStoredHere | SiteAdopted
             | Ticked)
