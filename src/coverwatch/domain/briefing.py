"""Rosters, qualifications and briefing (pure): who may count with which
capability, whether an officer may be assigned to a post, which duty events a
roster implies, and which officers are on duty unbriefed.

Rules (docs/orders.md, "Rosters, qualifications and acknowledgement"):

* A capability is *governed* when a site rule names it and at least one
  qualification record of that name exists. A governed capability counts
  for an officer only at instants where one of their records of that name
  is valid (``valid_from <= t < valid_until``). Ungoverned capabilities count
  as claimed, as before.
* An officer may be rostered to a post only if, for every capability named
  by the post's rules, one of their qualification records is valid for the
  whole shift.
* An officer on duty while rostered to a post is *unbriefed* when they have
  not acknowledged the post's current orders version: from when they went on
  duty (alerted at once) or, if the orders changed during their duty and they
  had acknowledged an earlier version, from the change (alerted once
  ``reacknowledge_us`` has passed without a new acknowledgement).

Times are int microseconds since the Unix epoch, always passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from coverwatch.domain.site import Site
from coverwatch.domain.time import format_time

__all__ = [
    "DutyBoundary",
    "Qualification",
    "Shift",
    "Unbriefed",
    "assignment_problems",
    "counted_capabilities",
    "governed_capabilities",
    "qualification_expiries",
    "roster_boundaries",
    "shift_at",
    "unbriefed",
    "valid_qualifications",
]


@dataclass(frozen=True, slots=True)
class Shift:
    """An officer rostered to a post (or a named patrol) for ``[start, end)``."""

    id: int
    officer: str
    start: int
    end: int
    post: str | None = None
    patrol: str | None = None

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"shift of {self.officer}: end must be after start")
        if (self.post is None) == (self.patrol is None):
            raise ValueError(f"shift of {self.officer}: give exactly one of post or patrol")

    def covers(self, t: int) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class Qualification:
    """One qualification record: ``name`` (a capability) valid for ``[valid_from, valid_until)``."""

    officer: str
    name: str
    valid_until: int
    valid_from: int | None = None

    def valid_at(self, t: int) -> bool:
        return (self.valid_from is None or self.valid_from <= t) and t < self.valid_until

    def valid_throughout(self, start: int, end: int) -> bool:
        """Valid at every instant of ``[start, end)``."""
        return (self.valid_from is None or self.valid_from <= start) and end <= self.valid_until


def governed_capabilities(site: Site, qualifications: Iterable[Qualification]) -> frozenset[str]:
    """Capabilities named by a site rule that have at least one qualification record."""
    named = {r.capability for _, r in site.rules() if r.capability is not None}
    return frozenset(named & {q.name for q in qualifications})


def valid_qualifications(
    officer: str, t: int, qualifications: Iterable[Qualification]
) -> frozenset[str]:
    """Names of ``officer``'s qualifications valid at ``t``."""
    return frozenset(q.name for q in qualifications if q.officer == officer and q.valid_at(t))


def counted_capabilities(
    claimed: Iterable[str], officer: str, t: int, governed: frozenset[str],
    qualifications: Iterable[Qualification],
) -> frozenset[str]:
    """The claimed capabilities that count at ``t``: governed ones need a valid record."""
    claimed = frozenset(claimed)
    if not claimed & governed:
        return claimed
    valid = valid_qualifications(officer, t, qualifications)
    return frozenset(c for c in claimed if c not in governed or c in valid)


def assignment_problems(
    site: Site, shift: Shift, qualifications: Iterable[Qualification]
) -> list[str]:
    """Why ``shift`` may not be rostered (empty: it may). Patrols need no qualification."""
    if shift.post is None:
        return []
    try:
        post = site.post(shift.post)
    except KeyError:
        return [f"no post {shift.post!r} in site {site.id}"]
    quals = [q for q in qualifications if q.officer == shift.officer]
    problems: list[str] = []
    for rule in post.rules:
        cap = rule.capability
        if cap is None or any(p.startswith(f"{shift.officer} is not qualified {cap}")
                              for p in problems):
            continue
        if any(q.name == cap and q.valid_throughout(shift.start, shift.end) for q in quals):
            continue
        held = sorted((q for q in quals if q.name == cap), key=lambda q: q.valid_until)
        if held:
            last = held[-1]
            detail = f"their {cap} qualification is valid until {format_time(last.valid_until)}"
            if last.valid_from is not None and last.valid_from > shift.start:
                detail = (f"their {cap} qualification is valid from "
                          f"{format_time(last.valid_from)} until {format_time(last.valid_until)}")
        else:
            detail = f"they hold no {cap} qualification"
        problems.append(
            f"{shift.officer} is not qualified {cap} for the whole shift "
            f"{format_time(shift.start)} to {format_time(shift.end)}: rule {rule.id} of "
            f"{post.name} needs {cap} officers and {detail}")
    return problems


@dataclass(frozen=True, slots=True)
class DutyBoundary:
    """A duty event a roster implies: ``officer`` on (at a shift start) or off (at its end)."""

    t: int
    officer: str
    on: bool
    shift_id: int


def roster_boundaries(shifts: Iterable[Shift], after: int, until: int) -> list[DutyBoundary]:
    """Shift starts and ends with ``after <= t < until``, in time order.

    Back-to-back shifts of one officer (an end at another's start) give no
    off-and-on: the end is left out, so they stay on duty.
    """
    shifts = list(shifts)
    starts = {(s.officer, s.start) for s in shifts}
    out: list[DutyBoundary] = []
    for s in shifts:
        if after <= s.start < until:
            out.append(DutyBoundary(s.start, s.officer, True, s.id))
        if after <= s.end < until and (s.officer, s.end) not in starts:
            out.append(DutyBoundary(s.end, s.officer, False, s.id))
    out.sort(key=lambda b: (b.t, b.officer, b.on, b.shift_id))
    return out


def qualification_expiries(
    qualifications: Iterable[Qualification], after: int, until: int
) -> list[Qualification]:
    """Records whose validity ends at ``after <= t < until``, by end time."""
    return sorted((q for q in qualifications if after <= q.valid_until < until),
                  key=lambda q: (q.valid_until, q.officer, q.name))


def shift_at(shifts: Iterable[Shift], officer: str, t: int) -> Shift | None:
    """The officer's shift covering ``t`` (the latest-starting one if they overlap)."""
    found = [s for s in shifts if s.officer == officer and s.covers(t)]
    return max(found, key=lambda s: (s.start, s.id)) if found else None


@dataclass(frozen=True, slots=True)
class Unbriefed:
    """An officer on duty at ``post`` without having acknowledged ``version``.

    ``since`` is when the condition began (duty start, or the orders change);
    ``alert_at`` when it is to be alerted.
    """

    officer: str
    post: str
    version: str
    since: int
    alert_at: int


def unbriefed(
    t: int,
    shifts: Sequence[Shift],
    on_duty_since: Mapping[str, int],
    current: Mapping[str, tuple[str, int]],
    acknowledged: Mapping[tuple[str, str], frozenset[str]],
    reacknowledge_us: int,
) -> list[Unbriefed]:
    """Every officer unbriefed at ``t`` whose alert is due by ``t``.

    ``on_duty_since`` maps each officer on duty at ``t`` to when they went on
    duty; ``current`` maps post ids to (current version, since when it is
    current); ``acknowledged`` maps (officer, post) to the versions they have
    acknowledged.
    """
    out: list[Unbriefed] = []
    # Each officer's shifts covering t, found once: thousands of officers on duty and
    # thousands of shifts must not cost officers x shifts at every step.
    covering: dict[str, list[Shift]] = {}
    for s in shifts:
        if s.officer in on_duty_since and s.covers(t):
            covering.setdefault(s.officer, []).append(s)
    # Only they can be unbriefed: an officer on duty with no shift now has no post.
    for officer in sorted(covering):
        duty_since = on_duty_since[officer]
        shift = shift_at(covering[officer], officer, t)
        if shift is None or shift.post is None or shift.post not in current:
            continue
        version, version_since = current[shift.post]
        acks = acknowledged.get((officer, shift.post), frozenset())
        if version in acks:
            continue
        duty_start = max(duty_since, shift.start)
        if version_since > duty_start and acks:
            since, alert_at = version_since, version_since + reacknowledge_us
        else:
            since = alert_at = duty_start
        if alert_at <= t:
            out.append(Unbriefed(officer, shift.post, version, since, alert_at))
    return out
