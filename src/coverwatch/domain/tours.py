"""Checkpoints and tours (pure): tags an officer scans, and rounds of them with
a time window per checkpoint.

A checkpoint is an NFC tag, a QR code or a BLE beacon at a surveyed position.
A scan is an exact fix there (docs/semantics.md, "Scans"); it also counts
towards the site's tours. A tour repeats every ``every_s`` from ``from_s``
seconds after local midnight (the site's timezone); each repetition is a
*round*. In a round, each stop's checkpoint is due ``within_s`` after the
round starts (unordered tours) or after the previous stop was scanned (ordered
tours; after a missed stop, after that stop's due time). A stop not scanned
by its due time is *missed*: a ``tour`` alert is raised then, and resolved by
the late scan, or at the round's end if it never comes. Everything here is a
function of the scans seen so far and the time, so live and replay agree.
Times are int microseconds since the Unix epoch.
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coverwatch.domain.alertbook import AlertBook
from coverwatch.domain.alerts import Alert
from coverwatch.domain.time import US_PER_S

__all__ = [
    "CHECKPOINT_KINDS",
    "DEFAULT_CHECKPOINT_ACCURACY_M",
    "DEFAULT_SCAN_WALK_MPS",
    "TOUR_ALERT_KIND",
    "Checkpoint",
    "RoundStatus",
    "Scan",
    "StopStatus",
    "Tour",
    "TourAlert",
    "TourStop",
    "apply_tour_alerts",
    "round_alerts",
    "round_starts",
    "round_status",
    "round_windows",
    "tour_rule",
]

CHECKPOINT_KINDS = ("nfc", "qr", "ble")
#: How close an officer must be to scan, by kind, when the site gives no accuracy:
#: NFC is read at a few centimetres, a QR code across a corridor, a BLE beacon
#: across a room (its received-signal threshold decides).
DEFAULT_CHECKPOINT_ACCURACY_M = {"nfc": 1.0, "qr": 3.0, "ble": 10.0}
TOUR_ALERT_KIND = "tour"
#: How fast a scan's accuracy grows after the scan (m/s) when the site sets no
#: ``scan_walk_mps``: a brisk walk, so an officer counts only as far as they could have gone.
DEFAULT_SCAN_WALK_MPS = 1.5


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tag at a surveyed position (site metres); ``accuracy_m`` is how far from
    ``at`` a scan can be made. ``post``: the post it belongs to, if any."""

    id: str
    at: tuple[float, float]
    kind: str
    accuracy_m: float
    post: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint {self.id}: kind must be one of "
                             f"{', '.join(CHECKPOINT_KINDS)}")
        if not self.accuracy_m >= 0:
            raise ValueError(f"checkpoint {self.id}: accuracy_m must be >= 0")


@dataclass(frozen=True, slots=True)
class TourStop:
    """One checkpoint of a tour, due ``within_s`` after its reference time."""

    checkpoint: str
    within_s: float


@dataclass(frozen=True, slots=True)
class Tour:
    """Rounds of checkpoints every ``every_s`` seconds, the first ``from_s`` seconds
    after local midnight; ``ordered``: stops are walked in the order given."""

    id: str
    stops: tuple[TourStop, ...]
    every_s: float
    from_s: float = 0.0
    ordered: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        if not self.stops:
            raise ValueError(f"tour {self.id}: needs at least one stop")
        if not self.every_s > 0:
            raise ValueError(f"tour {self.id}: every_s must be > 0")
        ids = [s.checkpoint for s in self.stops]
        if len(set(ids)) != len(ids):
            raise ValueError(f"tour {self.id}: a checkpoint appears twice")

    @property
    def length_us(self) -> int:
        return round(self.every_s * US_PER_S)


@dataclass(frozen=True, slots=True)
class Scan:
    """An officer scanned a checkpoint at ``t``."""

    t: int
    officer: str
    checkpoint: str


@dataclass(frozen=True, slots=True)
class StopStatus:
    """A stop in one round: ``due_by`` (None while its reference is not known:
    an ordered stop whose predecessor is still due), the scan that counted
    (``scanned_at``, ``officer``) and whether it was ``late`` (after ``due_by``),
    and ``missed``: not scanned, and ``due_by`` has passed, as of the time asked."""

    checkpoint: str
    due_by: int | None
    scanned_at: int | None = None
    officer: str | None = None
    late: bool = False
    missed: bool = False


@dataclass(frozen=True, slots=True)
class RoundStatus:
    """One round of a tour, as of ``at``."""

    tour: str
    start: int
    end: int
    stops: tuple[StopStatus, ...]
    at: int

    @property
    def next_stop(self) -> StopStatus | None:
        """The stop to scan next: the first that can still be made on time, neither
        scanned nor missed (in order, for ordered tours; the soonest due, for
        unordered ones); None when every remaining stop is missed."""
        todo = [s for s in self.stops if s.scanned_at is None and not s.missed]
        if not todo:
            return None
        known = [s for s in todo if s.due_by is not None]
        return min(known, key=lambda s: s.due_by or 0) if known else todo[0]

    @property
    def officers(self) -> tuple[str, ...]:
        """Who scanned in this round, in order of their first scan."""
        seen: dict[str, int] = {}
        for s in sorted((s for s in self.stops if s.officer), key=lambda s: s.scanned_at or 0):
            seen.setdefault(s.officer or "", 0)
        return tuple(seen)


def tour_rule(tour: str, checkpoint: str) -> str:
    """The ``rule`` of a tour alert: one alert per tour, checkpoint and round."""
    return f"tour:{tour}:{checkpoint}"


def round_windows(tour: Tour, timezone: str, start: int, end: int) -> list[tuple[int, int]]:
    """The rounds (start, end) that overlap [start, end): anchored at local midnight
    of each day (the site's timezone) plus ``from_s``, every ``every_s`` of elapsed
    time, the last one of a day cut at the next day's anchor (so a period that does
    not divide the day restarts daily)."""
    tz = zoneinfo.ZoneInfo(timezone)
    day = _dt.datetime.fromtimestamp(start / US_PER_S, tz).date() - _dt.timedelta(days=1)
    out: list[tuple[int, int]] = []
    while True:
        midnight = _dt.datetime.combine(day, _dt.time(0), tz)
        anchor = round((midnight.timestamp() + tour.from_s) * US_PER_S)
        tomorrow = _dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time(0), tz)
        next_anchor = round((tomorrow.timestamp() + tour.from_s) * US_PER_S)
        if anchor >= end:
            return out
        t = anchor
        while t < next_anchor and t < end:
            stop = min(t + tour.length_us, next_anchor)
            if stop > start:
                out.append((t, stop))
            t += tour.length_us
        day += _dt.timedelta(days=1)


def round_starts(tour: Tour, timezone: str, start: int, end: int) -> list[int]:
    """Starts of the rounds that overlap [start, end) (see :func:`round_windows`)."""
    return [s for s, _ in round_windows(tour, timezone, start, end)]


def round_status(tour: Tour, start: int, end: int, scans: Iterable[Scan], at: int,
                 ) -> RoundStatus:
    """The round [start, end) of ``tour`` as of time ``at``, from the scans made
    (any order; only those in [start, min(end, at)] count)."""
    stop_ids = {s.checkpoint for s in tour.stops}
    mine = sorted((s for s in scans if s.checkpoint in stop_ids and start <= s.t < end
                   and s.t <= at), key=lambda s: (s.t, s.officer))
    first: dict[str, Scan] = {}
    out: list[StopStatus] = []
    if not tour.ordered:
        for s in mine:
            first.setdefault(s.checkpoint, s)
        for stop in tour.stops:
            out.append(_stop(stop, start + round(stop.within_s * US_PER_S),
                             first.get(stop.checkpoint), end, at))
        return RoundStatus(tour.id, start, end, tuple(out), at)
    ref: int | None = start
    for stop in tour.stops:
        if ref is None:
            out.append(StopStatus(stop.checkpoint, None))
            continue
        due = ref + round(stop.within_s * US_PER_S)
        # In order: only a scan after the previous stop's reference counts.
        scan = next((s for s in mine if s.checkpoint == stop.checkpoint and s.t >= ref), None)
        status = _stop(stop, due, scan, end, at)
        out.append(status)
        if status.scanned_at is not None:
            ref = status.scanned_at
        elif status.missed:
            ref = due
        else:
            ref = None
    return RoundStatus(tour.id, start, end, tuple(out), at)


def _stop(stop: TourStop, due: int, scan: Scan | None, end: int, at: int) -> StopStatus:
    due = min(due, end)
    if scan is not None:
        return StopStatus(stop.checkpoint, due, scan.t, scan.officer, late=scan.t > due)
    return StopStatus(stop.checkpoint, due, missed=at > due)



@dataclass(frozen=True, slots=True)
class TourAlert:
    """A ``tour`` alert a round calls for: raised at ``due`` (the stop's due
    time), resolved at ``resolved_at`` (the late scan, or the round's end once
    passed with no scan), None while the stop is still missed."""

    post: str
    rule: str
    due: int
    resolved_at: int | None
    details: dict[str, str | int | None]


def round_alerts(status: RoundStatus, checkpoints: Mapping[str, Checkpoint]) -> list[TourAlert]:
    """The alerts of one round as of ``status.at``: one per late or missed stop.
    ``post`` is the checkpoint's post, or the tour's id if it has none."""
    out = []
    for stop in status.stops:
        if not (stop.late or stop.missed) or stop.due_by is None:
            continue
        cp = checkpoints.get(stop.checkpoint)
        post = cp.post if cp is not None and cp.post else status.tour
        resolved = stop.scanned_at if stop.late else (status.end if status.at >= status.end
                                                      else None)
        out.append(TourAlert(post, tour_rule(status.tour, stop.checkpoint), stop.due_by,
                             resolved, {"tour": status.tour, "checkpoint": stop.checkpoint,
                                        "round_start": status.start,
                                        "scanned_at": stop.scanned_at,
                                        "officer": stop.officer}))
    return out


def apply_tour_alerts(book: AlertBook, alerts: Iterable[TourAlert]) -> list[Alert]:
    """Raise (once) and resolve the ``tour`` alerts in ``book``: same lifecycle
    and escalation as a lapse, with ``lapse_start`` the stop's due time."""
    out = []
    for a in alerts:
        alert = book.on_alert(a.post, a.rule, a.due, a.due, 0, 1, kind=TOUR_ALERT_KIND,
                              details=a.details)
        if a.resolved_at is not None:
            book.on_lapse_ended(a.post, a.rule, a.due, a.resolved_at, kind=TOUR_ALERT_KIND)
        out.append(alert)
    return out
