"""Alarm floods: alerts from one cause grouped into one incident, told once per level.

Vocabulary of ISA-18.2 / EEMUA 191 (see docs/alerts.md, "Floods and incidents"):
a *flood* is more alerts at once than a person can handle; alerts that follow
from one cause are *consequential* and are shown and told as members of one
**incident**; *shelving* (:mod:`coverwatch.domain.shelving`) hides an alert for a
set time, with a reason.

The rules (pure, deterministic, decided on the escalation steps the alert book
emits, so grouping happens exactly where people would be told):

* Only lapse and device-silent alerts are grouped. An SOS or fall is never
  grouped or held back; neither are the server's own alerts.
* A new alert whose step falls due within ``window_us`` of at least
  ``min_members - 1`` other groupable alerts (new in this batch or seen in the
  window before) forms an incident with them; a new alert due within the window
  of an incident's latest member joins that incident.
* Each incident is told once per escalation level: the first member step at a
  level becomes the incident's message at that level, later member steps at
  that level are held (the screen shows them in the incident). Alerts that were
  told on their own before the incident formed stay told; they are members.
* The cause is named from the facts: ``outage`` (members raised at least
  ``late_us`` after they fell due: the engine caught up after a gap, so the
  lapses come from stale data), ``flag-switch`` (every lapse began at the same
  instant: a flag switch or a site change), ``signal-loss`` (every member has
  no officer counting) or ``flood``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coverwatch.domain.alerts import Escalation
from coverwatch.domain.time import US_PER_S

__all__ = [
    "GROUPED_KINDS",
    "Incident",
    "IncidentBook",
    "IncidentStep",
    "incident_message",
]

GROUPED_KINDS = frozenset({"lapse", "device-silent"})

_CAUSE_WORDS = {
    "outage": "raised late after a gap in the data (a server or network outage): "
              "these lapses come from stale data and are consequential",
    "flag-switch": "every lapse began at the same instant (a flag switch or a site change)",
    "signal-loss": "no officer counts at any of these posts (a site-wide loss of signal?)",
    "flood": "many alerts at once",
}


@dataclass(slots=True)
class Incident:
    """Alerts grouped as one cause; ``told`` holds the levels already sent."""

    id: str
    started: int
    cause: str
    members: list[str] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)
    told: set[int] = field(default_factory=set)
    latest: int = 0

    @property
    def detail(self) -> str:
        return _CAUSE_WORDS[self.cause]

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "cause": self.cause, "detail": self.detail,
                "members": list(self.members), "posts": list(self.posts),
                "told_levels": sorted(self.told)}

    def to_record(self) -> dict[str, object]:
        """What is stored, so that a restart shows the same incident (see from_record)."""
        return {"id": self.id, "started": self.started, "cause": self.cause,
                "members": list(self.members), "posts": list(self.posts),
                "told": sorted(self.told), "latest": self.latest}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Incident:
        """The incident of a stored record (ValueError naming the field if it is not one)."""
        def ints(key: str) -> list[int]:
            v = record.get(key)
            if not isinstance(v, list) or not all(type(x) is int for x in v):
                raise ValueError(f"incident record: {key} must be a list of integers")
            return v

        def texts(key: str) -> list[str]:
            v = record.get(key)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"incident record: {key} must be a list of texts")
            return v
        iid, cause = record.get("id"), record.get("cause")
        started, latest = record.get("started"), record.get("latest")
        if not isinstance(iid, str) or not iid:
            raise ValueError("incident record: id must be a non-empty text")
        if cause not in _CAUSE_WORDS:
            raise ValueError(f"incident record: cause {cause!r} is not one of "
                             f"{', '.join(_CAUSE_WORDS)}")
        if type(started) is not int or type(latest) is not int:
            raise ValueError("incident record: started and latest must be integers (µs)")
        return cls(iid, started, str(cause), texts("members"), texts("posts"),
                   set(ints("told")), latest)


@dataclass(frozen=True, slots=True)
class IncidentStep:
    """Tell ``targets`` once about ``incident`` at ``level`` (``step`` is the first member's)."""

    incident: Incident
    level: int
    step: Escalation
    members: tuple[str, ...]


@dataclass(slots=True)
class _Seen:
    alert_id: str
    post: str
    due_at: int
    step: Escalation


class IncidentBook:
    """Groups escalation steps into incidents (see the module's rules)."""

    def __init__(self, min_members: int = 3, window_us: int = 60 * US_PER_S,
                 late_us: int = 10 * US_PER_S) -> None:
        if min_members < 2 or window_us <= 0 or late_us <= 0:
            raise ValueError("need min_members >= 2, window_us > 0 and late_us > 0")
        self.min_members = min_members
        self.window_us = window_us
        self.late_us = late_us
        self.by_id: dict[str, Incident] = {}
        self._of: dict[str, Incident] = {}
        self._solo: list[_Seen] = []  # groupable alerts told on their own, recently
        self._changed: set[str] = set()  # incidents formed, joined or told since taken

    def restore(self, incidents: Iterable[Incident]) -> None:
        """Take incidents as stored (at start-up): their members stay grouped."""
        for incident in incidents:
            self.by_id[incident.id] = incident
            for member in incident.members:
                self._of[member] = incident

    def take_changed(self) -> list[Incident]:
        """The incidents changed since the last call (to be stored), oldest first."""
        out = [self.by_id[i] for i in sorted(self._changed) if i in self.by_id]
        self._changed.clear()
        return sorted(out, key=lambda i: (i.started, i.id))

    def incident_of(self, alert_id: str) -> Incident | None:
        return self._of.get(alert_id)

    def incidents(self) -> list[Incident]:
        return sorted(self.by_id.values(), key=lambda i: (i.started, i.id))

    def fold(self, steps: Sequence[Escalation]) -> tuple[list[Escalation], list[IncidentStep]]:
        """Split steps into those sent on their own and one step per incident and level."""
        solo: list[Escalation] = []
        by_incident: dict[tuple[str, int], list[Escalation]] = {}
        new = [s for s in steps if s.kind in GROUPED_KINDS and s.alert_id not in self._of
               and not any(x.alert_id == s.alert_id for x in self._solo)]
        self._group(new)
        for step in steps:
            incident = self._of.get(step.alert_id)
            if incident is None:
                solo.append(step)
                if step.kind in GROUPED_KINDS and step.level == 0:
                    self._solo.append(_Seen(step.alert_id, step.post, step.due_at, step))
            else:
                by_incident.setdefault((incident.id, step.level), []).append(step)
        out: list[IncidentStep] = []
        for (iid, level), members in by_incident.items():
            incident = self.by_id[iid]
            if level in incident.told:
                continue  # held: the incident was told at this level
            incident.told.add(level)
            self._changed.add(iid)
            out.append(IncidentStep(incident, level, members[0],
                                    tuple(incident.members)))
        return solo, out

    def _group(self, new: Sequence[Escalation]) -> None:
        # Join an incident whose latest member is within the window.
        rest: list[Escalation] = []
        for step in sorted(new, key=lambda s: (s.due_at, s.alert_id)):
            near = [i for i in self.by_id.values()
                    if abs(step.due_at - i.latest) <= self.window_us]
            if near:
                self._add(max(near, key=lambda i: i.latest), step)
            else:
                rest.append(step)
        if not rest:
            return
        newest = max(s.due_at for s in rest)
        self._solo = [x for x in self._solo if newest - x.due_at <= self.window_us]
        earlier = [x.step for x in self._solo]
        together = [s for s in (*earlier, *rest) if newest - s.due_at <= self.window_us]
        if len(together) < self.min_members:
            return
        first = min(together, key=lambda s: (s.due_at, s.alert_id))
        incident = Incident(id=f"incident-{first.alert_id}", started=first.lapse_start,
                            cause=_cause(together, self.late_us), latest=first.due_at)
        self.by_id[incident.id] = incident
        for step in sorted(together, key=lambda s: (s.due_at, s.alert_id)):
            self._add(incident, step)
        grouped = {s.alert_id for s in together}
        self._solo = [x for x in self._solo if x.alert_id not in grouped]
        # Levels the earlier members were told on their own count as told.
        incident.told.update(x.level for x in earlier if x.alert_id in grouped)

    def _add(self, incident: Incident, step: Escalation) -> None:
        if step.alert_id in self._of:
            return
        incident.members.append(step.alert_id)
        if step.post not in incident.posts:
            incident.posts.append(step.post)
        incident.latest = max(incident.latest, step.due_at)
        self._of[step.alert_id] = incident
        self._changed.add(incident.id)


def _cause(steps: Sequence[Escalation], late_us: int) -> str:
    if sum(1 for s in steps if s.at - s.due_at >= late_us) * 2 > len(steps):
        return "outage"
    if len({s.lapse_start for s in steps}) == 1:
        return "flag-switch"
    if all(s.count == 0 for s in steps):
        return "signal-loss"
    return "flood"


def incident_message(step: IncidentStep, name_of: Callable[[str], str] | None = None,
                     shown: int = 10) -> tuple[str, str]:
    """``(title, body)`` for an incident: what, how many, where (first ``shown`` posts).

    Levels are counted from 1, as on screen.
    """
    inc = step.incident
    names = [name_of(p) if name_of else p for p in inc.posts]
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more"
                                          if len(names) > shown else "")
    n = len(inc.members)
    title = f"INCIDENT: {n} alert{'s' if n != 1 else ''} at {len(names)} " \
            f"post{'s' if len(names) != 1 else ''} ({inc.cause})"
    body = (f"{title}: {inc.detail}. Posts: {listed}. One message per level for the "
            f"whole incident; the control room lists every member. Level {step.level + 1}.")
    return title, body

