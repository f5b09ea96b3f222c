"""Alerts: cover changes become alerts, escalation levels fall due, a person
acknowledges or closes one, and the adapters' commands (:mod:`coverwatch.server.commands`:
a level that reached nobody, alerts about supervision itself, the briefing's and the
tours' alerts) are carried out. Each stores its decision before memory changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from coverwatch.domain.alerts import Alert, AlertState, Escalation, alert_id_for
from coverwatch.domain.supervision import escalate_now, raise_direct
from coverwatch.domain.time import format_time
from coverwatch.engine import CoverChange
from coverwatch.server.commands import (
    Command,
    Done,
    EscalateNow,
    KeepAlerts,
    RaiseDirect,
    ResolveDirect,
)
from coverwatch.server.happenings import (
    AlertChanged,
    AlertSettled,
    CoverChanged,
    DirectRaised,
    Happening,
    LevelRecorded,
    LevelsDue,
)
from coverwatch.server.pools import in_store
from coverwatch.server.unit import SiteUnit
from coverwatch.storage import Store

__all__ = ["acknowledge", "apply_cover_changes", "close_alert", "escalate", "execute",
           "last_position", "settled_by"]

log = logging.getLogger("coverwatch.server")


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
        steps, others = await unit.bus.escalating(steps)
        for s in others:  # another node's to send: due again here when it becomes ours
            alert = unit.book.get(s.alert_id)
            alert.escalated_level = min(alert.escalated_level, s.level - 1)
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


async def execute(unit: SiteUnit, command: Command) -> Done:
    """Carry out an adapter's command (the one door the outbox, the briefing, the tours
    and the dead-man check change a site through)."""
    if isinstance(command, EscalateNow):
        return await _escalate_now(unit, command)
    if isinstance(command, RaiseDirect):
        return await _raise_direct(unit, command)
    if isinstance(command, ResolveDirect):
        return await _resolve_direct(unit, command)
    return await _keep_alerts(unit, command)


async def _escalate_now(unit: SiteUnit, cmd: EscalateNow) -> Done:
    async with unit.lock:
        nxt = escalate_now(unit.book, cmd.alert_id, cmd.failed_level, unit.clock())
        alert = unit.book.get(cmd.alert_id)
        if nxt is not None:
            await in_store(unit.store.record_alert_event, alert.to_record(), actor="engine",
                           action=f"alert.level-due.{nxt.level}")
    if nxt is not None:
        await unit.subscribers.dispatch([LevelRecorded(alert, nxt.level, tuple(nxt.targets))])
    return Done((alert,), nxt)


async def _raise_direct(unit: SiteUnit, cmd: RaiseDirect) -> Done:
    async with unit.lock:
        alert = raise_direct(unit.book, cmd.kind, cmd.post, cmd.rule, unit.clock(), cmd.detail,
                             cmd.about)
        try:
            await in_store(unit.store.record_alert_event, alert.to_record(), actor="server",
                           action="alert.raised")
        except Exception:  # e.g. the store is the problem: still shown and sent
            log.exception("could not store %s alert %s", cmd.kind, alert.id)
    log.error("%s alert: %s", cmd.kind, cmd.detail)
    await unit.subscribers.dispatch([AlertChanged(alert), DirectRaised(alert)])
    return Done((alert,))


async def _resolve_direct(unit: SiteUnit, cmd: ResolveDirect) -> Done:
    async with unit.lock:
        trial = Alert.from_record(unit.book.get(cmd.alert_id).to_record())
        trial.resolve(max(unit.clock(), trial.lapse_start))
        await in_store(unit.store.record_alert_event, trial.to_record(), actor="server",
                       action="alert.resolved")
        unit.book.restore(trial)
    log.info("%s alert %s resolved: %s", trial.kind, trial.id, cmd.why)
    await unit.subscribers.dispatch([AlertChanged(trial)])
    return Done((trial,))


async def _keep_alerts(unit: SiteUnit, cmd: KeepAlerts) -> Done:
    # Decided in memory, then stored in one transaction: thousands of officers unbriefed at
    # once cost a fixed number of statements, not a commit each (issue 25).
    live = (AlertState.OPEN, AlertState.ACKNOWLEDGED)
    touched: list[Alert] = []
    changes: list[tuple[dict[str, Any], str]] = []
    trials: list[Alert] = []
    wanted: set[str] = set()

    def resolve(alert: Alert, at: int) -> None:
        trial = Alert.from_record(alert.to_record())
        trial.resolve(max(at, trial.lapse_start))
        changes.append((trial.to_record(), "alert.resolved"))
        trials.append(trial)
        touched.append(trial)

    async with unit.lock:
        for want in cmd.wanted:
            alert_id = alert_id_for(cmd.kind, want.post, want.rule, want.lapse_start)
            wanted.add(alert_id)
            if alert_id not in unit.book:
                alert = unit.book.on_alert(want.post, want.rule, want.lapse_start, want.alert_at,
                                           0, 1, kind=cmd.kind, details=want.details)
                changes.append((alert.to_record(), "alert.raised"))
                touched.append(alert)
            alert = unit.book.get(alert_id)
            if want.resolved_at is None or alert.state not in live:
                continue
            resolve(alert, want.resolved_at)
        if cmd.resolve_unwanted_at is not None:
            for alert in unit.book.alerts():
                if alert.kind != cmd.kind or alert.id in wanted or alert.state not in live:
                    continue
                resolve(alert, cmd.resolve_unwanted_at)
        if changes:
            await asyncio.to_thread(unit.store.record_alert_events, changes, actor=cmd.actor)
        for trial in trials:
            unit.book.restore(trial)
    await unit.subscribers.dispatch([AlertChanged(a) for a in touched])
    return Done(tuple(touched))


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
