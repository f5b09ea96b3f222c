"""Alerts: cover changes become alerts, escalation levels fall due, a person
acknowledges or closes one. Each stores its decision before memory changes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from coverwatch.domain.alerts import Alert, Escalation
from coverwatch.domain.time import format_time
from coverwatch.engine import CoverChange
from coverwatch.server.happenings import (
    AlertChanged,
    AlertSettled,
    CoverChanged,
    Happening,
    LevelRecorded,
    LevelsDue,
)
from coverwatch.server.pools import in_store
from coverwatch.server.unit import SiteUnit
from coverwatch.storage import Store

__all__ = ["acknowledge", "apply_cover_changes", "close_alert", "escalate", "last_position",
           "settled_by"]


def apply_cover_changes(unit: SiteUnit, changes: Sequence[CoverChange]) -> list[Happening]:
    """Raise and resolve alerts for the engine's cover changes, each stored as it is
    decided (runs in a store thread, under the unit's lock)."""
    out: list[Happening] = []
    touched: list[Alert] = []
    for ch in changes:
        out.append(CoverChanged(ch))
        if ch.kind == "alert":
            before = unit.book.find(ch.post, ch.rule, ch.lapse_start)
            alert = unit.book.on_alert(ch.post, ch.rule, ch.lapse_start, ch.t, ch.count,
                                       unit.need(ch.post, ch.rule))
            if before is None:
                touched.append(alert)
                unit.store.record_alert_event(alert.to_record(), actor="engine",
                                              action="alert.raised")
        elif ch.kind == "lapse-ended":
            ended = unit.book.on_lapse_ended(ch.post, ch.rule, ch.lapse_start, ch.t)
            if ended is not None:
                touched.append(ended)
                unit.store.record_alert_event(ended.to_record(), actor="engine",
                                              action="alert.resolved")
    out += [AlertChanged(a) for a in touched]
    return out


def settled_by(unit: SiteUnit, changes: Sequence[CoverChange]) -> list[Happening]:
    """The alerts whose lapse these changes ended: their failed notices settle."""
    out: list[Happening] = []
    for ch in changes:
        if ch.kind == "lapse-ended":
            ended = unit.book.find(ch.post, ch.rule, ch.lapse_start)
            if ended is not None:
                out.append(AlertSettled(ended))
    return out


async def escalate(unit: SiteUnit, steps: Sequence[Escalation]) -> None:
    """Record the steps due (each once, and in distributed mode from one node) and
    hand them to the outbox, which sends them in the background."""
    if unit.bus is not None:  # each step from one node only, and never twice
        steps = await unit.bus.escalating(steps)
    # "level-due", not "escalated": whether anyone was reached is the deliveries' to say.
    for step in steps:
        alert = unit.book.get(step.alert_id)
        await in_store(unit.store.record_alert_event, alert.to_record(), actor="engine",
                       action=f"alert.level-due.{step.level}")
        await unit.subscribers.dispatch([LevelRecorded(alert, step.level, tuple(step.targets))])
    await unit.subscribers.dispatch([LevelsDue(tuple(steps))])


async def acknowledge(unit: SiteUnit, alert_id: str, user: str, note: str) -> Alert:
    """A person takes the alert (KeyError for an unknown id)."""
    return await _person_acts(unit, alert_id, user, note, "acknowledged")


async def close_alert(unit: SiteUnit, alert_id: str, user: str, note: str) -> Alert:
    """A person closes the alert (KeyError for an unknown id)."""
    return await _person_acts(unit, alert_id, user, note, "closed")


async def _person_acts(unit: SiteUnit, alert_id: str, user: str, note: str, what: str) -> Alert:
    # Decide on a copy and persist it first: memory changes only once the store agrees.
    # Under the lock, so the ticker cannot resolve or escalate the alert in between.
    async with unit.lock:
        trial = Alert.from_record(unit.book.get(alert_id).to_record())
        if what == "acknowledged":
            trial.acknowledge(user, note, unit.clock())
        else:
            trial.close(user, note, unit.clock())
        await asyncio.to_thread(unit.store.record_alert_event, trial.to_record(),
                                actor=user, action=f"alert.{what}")
        unit.book.restore(trial)
    await unit.subscribers.dispatch([AlertChanged(trial), AlertSettled(trial)])
    return trial


def last_position(store: Store, officer: str,
                  fix: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The officer's last known position (site metres), or None: "position unknown"."""
    if fix is None:  # late fixes count here: the last place they were seen
        fix = store.last_fix(officer)
    if fix is None:
        return None
    raw = fix.get("raw") or {}
    return {"x": fix["x"], "y": fix["y"], "accuracy_m": fix["accuracy"],
            "time": format_time(int(fix["t_us"])), "lat": raw.get("lat"),
            "lon": raw.get("lon")}
