"""The audit segment of an evidence pack: the run of the audit chain that follows the
pack's event window, not only the wall clock (``docs/evidence-format.md``, ``audit.jsonl``).

Choosing entries by their own wall-clock time misses what was done about historic data:
events stored hours after their time, the alerts about them raised, notified, acknowledged
and closed later still. The segment is the contiguous run of the chain from the earliest
to the latest entry *about the window*:

* every entry recorded (wall clock ``at``) within [since, until], as before;
* every entry about an alert of the window, i.e. an alert of ``alerts.json`` whose
  ``alert_at`` (its lapse past its grace, in event time) lies in [since, until]: subject
  ``alert:<id>`` (raised, level due, notification delivered or failed, dispatched,
  acknowledged, closed, resolved);
* every ``events.back-dated`` entry naming an event timed within [since, until];

and, when it comes earlier, from the first entry recorded at or after the arrival
(``received_us``) of the window's earliest-arrived event. Every entry between the two ends
is included, so an entry dropped from inside the run breaks its links; one dropped from
either end is named by the verifiers' coverage check (:func:`window_alerts`: each alert of
the window's raising, deliveries, acknowledgement and close must be in the segment).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from coverwatch.domain.time import parse_time
from coverwatch.storage import Store
from coverwatch.storage.audit import AuditEntry

__all__ = ["audit_segment", "window_alerts"]

_BATCH = 1000


def window_alerts(alerts: Iterable[dict[str, Any]], since: int,
                  until: int) -> list[dict[str, Any]]:
    """The alerts of the window: those whose ``alert_at`` lies in [since, until] (the rule
    the standalone verifier repeats)."""
    return [a for a in alerts if since <= int(a["alert_at"]) <= until]


def _names_window_event(e: AuditEntry, since: int, until: int) -> bool:
    if e.action != "events.back-dated":
        return False
    named = e.details.get("events")
    return isinstance(named, list) and any(
        isinstance(ev, dict) and isinstance(ev.get("t_us"), int)
        and since <= ev["t_us"] <= until for ev in named)


def _bounds(store: Store, since: int, until: int, subjects: set[str],
            arrival: int | None) -> tuple[int, int] | None:
    """The first and last id of the segment, or None when nothing is about the window."""
    first = last = after_arrival = None
    after = 0
    while batch := store.audit_entries(after, _BATCH):
        for e in batch:
            at = parse_time(e.at)
            if after_arrival is None and arrival is not None and at >= arrival:
                after_arrival = e.id
            if since <= at <= until or e.subject in subjects or \
                    _names_window_event(e, since, until):
                first = e.id if first is None else first
                last = e.id
        after = batch[-1].id
    if first is None or last is None:
        return None
    return (first if after_arrival is None else min(first, after_arrival)), last


def audit_segment(store: Store, since: int, until: int, alerts: Sequence[dict[str, Any]],
                  events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pack's audit entries (see the module docstring): ``alerts`` are the pack's,
    ``events`` the window's stored events (with ``received_us``)."""
    subjects = {f"alert:{a['id']}" for a in window_alerts(alerts, since, until)}
    arrival = min((int(r.get("received_us") or r["t_us"]) for r in events), default=None)
    bounds = _bounds(store, since, until, subjects, arrival)
    if bounds is None:
        return []
    first, last = bounds
    out: list[dict[str, Any]] = []
    after = first - 1
    while after < last and (batch := store.audit_entries(after, min(_BATCH, last - after))):
        out += [e.as_dict() for e in batch if e.id <= last]
        after = batch[-1].id
    return out
