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

Its ends are then widened so that the verifiers can tell the segment was not cut short:
back to an entry recorded before ``since`` (else to the chain's first entry), and on to the
chain's last entry, which the pack's tree head names as ``audit_last`` (:func:`reach_head`,
once the head is known). An entry recorded after ``until`` would not do for that end: an
alert of the window may be closed, or raised over late events, after any such entry.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from coverwatch.domain.time import parse_time
from coverwatch.storage import Store
from coverwatch.storage.audit import AuditEntry

__all__ = ["audit_segment", "reach_head", "window_alerts"]

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
    """The first and last id of the segment (None: the chain is empty)."""
    first = last = after_arrival = None
    ids, ats = array("q"), array("q")  # every entry's id and time, to widen the ends
    after = 0
    while batch := store.audit_entries(after, _BATCH):
        for e in batch:
            at = parse_time(e.at)
            ids.append(e.id)
            ats.append(at)
            if after_arrival is None and arrival is not None and at >= arrival:
                after_arrival = e.id
            if since <= at <= until or e.subject in subjects or \
                    _names_window_event(e, since, until):
                first = e.id if first is None else first
                last = e.id
        after = batch[-1].id
    if not ids:
        return None
    if first is None or last is None:  # nothing about the window: the entries around it
        before = [i for i, at in zip(ids, ats, strict=True) if at < since]
        first = last = before[-1] if before else ids[0]
    lo = bisect_left(ids, first if after_arrival is None else min(first, after_arrival))
    hi = bisect_right(ids, last)
    if not any(at < since for at in ats[lo:hi]):  # back to one recorded before the window
        lo = next((i for i in range(lo - 1, -1, -1) if ats[i] < since), 0)
    return ids[lo], ids[hi - 1]


def _entries(store: Store, first: int, last: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = first - 1
    while after < last and (batch := store.audit_entries(after, min(_BATCH, last - after))):
        out += [e.as_dict() for e in batch if e.id <= last]
        after = batch[-1].id
    return out


def reach_head(store: Store, segment: list[dict[str, Any]],
               head: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``segment`` carried on to the head's ``audit_last``, the chain's last entry then."""
    last = head.get("audit_last")
    if not isinstance(last, dict):
        return segment
    end = int(segment[-1]["id"]) if segment else 0
    return segment + _entries(store, end + 1, int(last["id"]))


def audit_segment(store: Store, since: int, until: int, alerts: Sequence[dict[str, Any]],
                  events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pack's audit entries (see the module docstring): ``alerts`` are the pack's,
    ``events`` the window's stored events (with ``received_us``)."""
    subjects = {f"alert:{a['id']}" for a in window_alerts(alerts, since, until)}
    arrival = min((int(r.get("received_us") or r["t_us"]) for r in events), default=None)
    bounds = _bounds(store, since, until, subjects, arrival)
    if bounds is None:
        return []
    return _entries(store, *bounds)
