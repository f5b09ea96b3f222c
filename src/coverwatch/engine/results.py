"""What the engine reports: lapses, live changes and per-rule statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CoverChange", "Lapse", "RuleStats", "TimelinePoint"]


@dataclass(slots=True)
class Lapse:
    """A maximal interval [start, end) in which an active rule had too few officers.

    ``end`` is None while the lapse is still open at the end of the window.
    ``alert_at`` is ``start + grace`` if the lapse lasted past its grace period.
    ``min_cover`` is the lowest count of officers seen during the lapse.
    """

    post: str
    rule: str
    start: int
    end: int | None
    alert_at: int | None
    min_cover: int


@dataclass(frozen=True, slots=True)
class CoverChange:
    """A live change, in event time, for the server's feed and alerting.

    ``kind`` is ``"lapse-started"``, ``"alert"`` (the grace period ran out with
    the lapse still open) or ``"lapse-ended"``. ``t`` is when it happened in
    event time; ``count`` is the number of officers counting at ``t``.
    """

    kind: str
    post: str
    rule: str
    t: int
    lapse_start: int
    count: int


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """From ``t`` on, a rule was in ``state`` with ``count`` officers counting.

    ``state`` is ``"inactive"``, ``"covered"`` or ``"lapsed"``.
    """

    t: int
    state: str
    count: int


@dataclass(slots=True)
class RuleStats:
    """Totals for one rule over the evaluated window (microseconds)."""

    post: str
    rule: str
    need: int
    active_us: int = 0
    covered_us: int = 0
    lapses: int = 0
    alerts: int = 0
    longest_lapse_us: int = 0
    timeline: list[TimelinePoint] = field(default_factory=list)

    @property
    def cover_pct(self) -> float | None:
        """Share of active time with enough cover, or None if never active."""
        if self.active_us == 0:
            return None
        return 100.0 * self.covered_us / self.active_us
