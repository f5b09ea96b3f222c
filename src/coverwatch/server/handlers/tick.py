"""Time passes: the ticker advances the horizon to the devices' watermark, raises
and resolves alerts for the cover changes, checks for silent devices and
escalates what is due."""

from __future__ import annotations

import asyncio
import logging

from coverwatch.domain.alerts import Alert, AlertState, alert_id_for
from coverwatch.domain.time import US_PER_S, format_time, seconds_to_us
from coverwatch.engine import CoverChange
from coverwatch.server.devices import silent_officers
from coverwatch.server.handlers.alerts import (
    apply_cover_changes,
    escalate,
    last_position,
    settled_by,
)
from coverwatch.server.happenings import AlertChanged, Happening, Ticked
from coverwatch.server.livecheckpoint import SAVE_EVERY_US, save
from coverwatch.server.pools import in_store
from coverwatch.server.statesaver import save_state
from coverwatch.server.unit import SiteUnit
from coverwatch.storage.versions import load_versions

__all__ = ["HORIZON_KEY", "SILENT", "check_silent", "quiet_tick",
           "save_live_checkpoint", "tick", "tick_every"]

log = logging.getLogger("coverwatch.server")

HORIZON_KEY = "live.horizon_us"
SILENT = "device-silent"


async def tick(unit: SiteUnit) -> list[CoverChange]:
    """Advance the watermark to now; raise, resolve and escalate alerts."""
    async with unit.lock:
        now = unit.clock()
        if now < unit.recover_until or not unit.evaluates:
            changes: list[CoverChange] = []
        else:
            changes = unit.live.advance_to(unit.watch.horizon(now))
        horizon = unit.live.horizon
        # Alert changes under the lock too, so a person's acknowledgement
        # (also under it) cannot overwrite a resolution made meanwhile.
        # No changes, nothing to store: no hop to a store thread 40 times a second.
        happened = await in_store(apply_cover_changes, unit, changes) if changes else []
        if (unit.evaluates and unit.settings.bus_url is None
                and horizon - unit.last_checkpoint >= SAVE_EVERY_US):
            # Under the lock: every committed event has been added to the live state.
            await in_store(save_live_checkpoint, unit)
            unit.last_checkpoint = horizon
        if unit.site.silent_after_s is not None and unit.briefing is not None:
            if unit.evaluates:
                happened += await asyncio.to_thread(check_silent, unit, now)
            elif unit.bus is not None and await unit.bus.silent_check_due(now):
                # Distributed: the site's owner checks, from the stored reports.
                happened += await asyncio.to_thread(check_silent, unit, now)
        steps = unit.book.tick(now)
    await unit.subscribers.dispatch(happened)
    if steps:
        await escalate(unit, steps)
    await unit.subscribers.dispatch([Ticked(now)])  # shelves that ended let their steps go
    await unit.subscribers.dispatch(settled_by(unit, changes))
    if now - unit.delays_logged >= 60 * US_PER_S:
        unit.delays_logged = now
        for device, d in unit.watch.delays().items():
            log.info("upload delay of %s: median %.1f s, p95 %.1f s, max %.1f s (%d readings)",
                     device, d["median_s"], d["p95_s"], d["max_s"], int(d["count"]))
    if unit.evaluates and (horizon - unit.last_saved_horizon >= US_PER_S or changes):
        try:
            await save_state(unit.store, HORIZON_KEY, str(horizon))
        except Exception as e:
            unit.health.committed(False, f"{type(e).__name__}: {str(e)[:200]}")
            raise
        unit.last_saved_horizon = horizon
    unit.health.ticked()
    return changes


def save_live_checkpoint(unit: SiteUnit) -> None:
    """Save the live state for the next start (server/livecheckpoint.py)."""
    try:
        save(unit.store, unit.live, load_versions(unit.store))
    except Exception:  # a start without it replays history: never stop the ticker for it
        log.exception("the live checkpoint could not be saved")


# Distributed mode: the workers' runs evaluate, so a node's ticker only escalates, ends
# shelves and checks silent devices (once a second): a quarter of a second is soon enough
# for those, and a thousand sites ticking 40 times a second took a node's whole event
# loop (its NATS requests timed out, a SIGTERM waited behind them).
BUS_TICK_S = 0.25


def quiet_tick(unit: SiteUnit) -> bool:
    """Whether a tick now would do nothing but say it ticked; if so, it is said and the
    tick can be skipped (server/upkeep.py). Only on a node that does not evaluate
    (distributed mode), with no silent devices to check, no escalation level due, no
    step a shelf held back and no delays to log: there a tick changes nothing else. A
    node that evaluates always ticks: its engine advances on the clock."""
    if unit.evaluates or (unit.site.silent_after_s is not None and unit.briefing is not None):
        return False
    now = unit.clock()
    if unit.outbox.held or now - unit.delays_logged >= 60 * US_PER_S or unit.book.level_due(now):
        return False
    unit.health.ticked()
    return True


def tick_every(unit: SiteUnit) -> float:
    """Seconds from the end of one tick to the next."""
    return unit.settings.tick_s if unit.evaluates else max(unit.settings.tick_s, BUS_TICK_S)


def check_silent(unit: SiteUnit, now: int) -> list[Happening]:
    """Raise "device-silent" alerts for rostered officers whose devices went quiet;
    resolve them when a device reports again or the shift is over (under the lock,
    in a store thread)."""
    site, book, store, watch = unit.site, unit.book, unit.store, unit.watch
    assert site.silent_after_s is not None and unit.briefing is not None
    on_duty = unit.shown.on_duty()
    silent = silent_officers(unit.briefing.shifts, watch, on_duty, now,
                             seconds_to_us(site.silent_after_s))
    wanted = {alert_id_for(SILENT, post, f"device:{officer}", since): (officer, since, post)
              for officer, (since, post) in silent.items()}
    touched: list[Alert] = []
    for alert_id, (officer, since, post) in wanted.items():
        if alert_id in book:
            continue
        last = store.last_fix(officer)
        devices = watch.by_officer().get(officer, [])
        battery = next((s.report.get("battery") for _, s in devices
                        if s.report and s.report.get("battery") is not None), None)
        alert = book.on_alert(
            post, f"device:{officer}", since, since + seconds_to_us(site.silent_after_s),
            0, 1, kind=SILENT, details={
                "officer": officer, "devices": [d for d, _ in devices],
                "last_report": None if not devices else format_time(
                    max(s.last_received for _, s in devices)),
                "position": last_position(store, officer, last), "battery": battery})
        store.record_alert_event(alert.to_record(), actor="devices", action="alert.raised")
        touched.append(alert)
    for alert in book.alerts():
        live = alert.state in (AlertState.OPEN, AlertState.ACKNOWLEDGED)
        if alert.kind != SILENT or alert.id in wanted or not live:
            continue
        trial = Alert.from_record(alert.to_record())
        trial.resolve(max(now, trial.lapse_start))
        store.record_alert_event(trial.to_record(), actor="devices", action="alert.resolved")
        book.restore(trial)
        touched.append(trial)
    return [AlertChanged(a) for a in touched]
