"""The running server's services: one object that owns the store, the live
engine, the alert book, the notifier and the live feed, and the one ingest path
every input (HTTP batch, OsmAnd, MQTT) goes through.

Ordering and durability: an ingest call takes the engine lock, decides which
events are late against the horizon (and which late state events are applied
at it), commits them all to the store, and only then feeds them to the engine
and returns. The ticker takes the
same lock to advance the horizon, so an event can never be fed behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from coverwatch.domain.alerts import (
    DEVICE_ALARM_KINDS,
    Alert,
    AlertBook,
    AlertState,
    Escalation,
    EscalationPolicy,
    alert_id_for,
)
from coverwatch.domain.changes import diff_sites
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time, seconds_to_us
from coverwatch.engine import CoverChange
from coverwatch.formats.sitefile import SiteDocument, load_site_text_document
from coverwatch.server.admission import admit
from coverwatch.server.devices import ALARM_ALERT_KINDS, DeviceWatch
from coverwatch.server.feed import Feed
from coverwatch.server.groupcommit import append_isolated
from coverwatch.server.latewatch import late_applied_message
from coverwatch.server.live import LiveCover
from coverwatch.server.policies import policy_from, sos_policy_from
from coverwatch.server.pools import in_store
from coverwatch.server.siteapply import apply_site
from coverwatch.server.watchdog import Health
from coverwatch.settings import Settings
from coverwatch.storage import Store
from coverwatch.storage.versions import SiteVersion, load_versions, save_versions

__all__ = ["Feed", "IngestResult", "Services", "policy_from", "sos_policy_from", "wall_clock_us"]

log = logging.getLogger("coverwatch.server")

_HORIZON_KEY = "live.horizon_us"
SILENT = "device-silent"


def wall_clock_us() -> int:
    """The server's clock, in microseconds since the epoch."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest call did: accepted counts new and re-sent events."""

    accepted: int
    duplicates: int
    late: int


@dataclass
class Services:
    """Everything a request handler or background task needs; built by bootstrap."""

    settings: Settings
    store: Store
    doc: SiteDocument
    live: LiveCover
    book: AlertBook
    feed: Feed = field(default_factory=Feed)
    clock: Callable[[], int] = wall_clock_us
    notifier: Any = None
    # coverwatch.server.outbox.Outbox: sends, records deliveries (set by build).
    outbox: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ingested: dict[str, int] = field(default_factory=dict)
    late_total: int = 0
    duplicates_total: int = 0
    mqtt_connected: bool = False
    _waiting: list[Any] = field(default_factory=list)
    _escalating: asyncio.Task[None] | None = None
    _duty_task: asyncio.Task[None] | None = None
    _delays_logged: int = 0
    _committer: asyncio.Task[None] | None = None
    mqtt_rejected: int = 0
    dead_letters: int = 0  # messages set aside since start (server.deadletters)
    # coverwatch.server.briefing.Briefing (set by bootstrap): filters capabilities at ingest.
    briefing: Any = None
    # coverwatch.server.tours.TourWatch (set by bootstrap): scans, rounds, tour alerts.
    tours: Any = None
    # Each device's newest report, upload delays and the watermark (set by build).
    watch: DeviceWatch = field(default_factory=lambda: DeviceWatch(2_000_000, 10_000_000))
    sos_policy: EscalationPolicy = field(default_factory=lambda: EscalationPolicy(()))
    _recover_until: int = 0
    _last_saved_horizon: int = 0
    # Ticker and store health, for /readyz and the watchdog.
    health: Health = field(default_factory=Health)
    # coverwatch.server.gateway.BusHooks in distributed mode (set by bootstrap): publishes
    # committed events, says which escalation steps this node sends.
    bus: Any = None

    # Distributed mode: the site's cover as its owner last checkpointed it (a LiveCover
    # refreshed by BusHooks.refresh_replica), shown where this node does not evaluate.
    replica: Any = None

    @property
    def shown(self) -> LiveCover:
        """The cover the views show: this node's engine, or its owner's latest state."""
        return self.live if self.evaluates or self.replica is None else self.replica

    def view_lag_s(self) -> float | None:
        """How far the shown cover trails the clock (None: nothing to show yet)."""
        if self.evaluates:
            return self.engine_lag_s()
        if self.replica is None:
            return None
        return max(0.0, (self.clock() - int(self.replica.horizon)) / US_PER_S)

    @property
    def evaluates(self) -> bool:
        """Whether this process runs the live engine (in distributed mode the workers do)."""
        return self.settings.bus_url is None

    @property
    def site(self) -> Site:
        return self.doc.site

    # -- start-up -----------------------------------------------------------

    @classmethod
    def build(
        cls, settings: Settings, store: Store, doc: SiteDocument,
        clock: Callable[[], int] = wall_clock_us, notifier: Any = None,
    ) -> Services:
        """Rebuild the live state from the store, as after a restart."""
        now = clock()
        lateness = seconds_to_us(settings.lateness_s)
        saved = store.get_state(_HORIZON_KEY)
        start_horizon = int(saved) if saved is not None else now - lateness
        # The rules in force at each moment: every applied version of the site.
        versions = load_versions(store) or [SiteVersion(start_horizon, doc.source)]
        sites = [load_site_text_document(v.source, str(settings.site_path)).site
                 for v in versions]
        live = LiveCover(sites[0], lateness_us=lateness, start_horizon=start_horizon,
                         timeline=True)  # the dashboard's cover timeline
        book = AlertBook.from_records(store.load_alerts(), policy_from(doc))
        svc = cls(settings, store, doc, live, book, clock=clock, notifier=notifier)
        from coverwatch.server.outbox import Outbox

        svc.outbox = Outbox(svc)
        svc.outbox.load()
        svc.sos_policy = sos_policy_from(doc)
        book.policy_for = svc._policy_for
        svc.watch = DeviceWatch(lateness, seconds_to_us(settings.max_lateness_s))
        svc.watch.load(store.last_device_reports())
        # Replay every stored event up to the saved horizon (late state events at the
        # horizon they were applied at). The engine is chunk-invariant, so this
        # reproduces the state of the uninterrupted run.
        after = 0
        while settings.bus_url is None:
            rows = store.events_since(after, limit=50_000)
            if not rows:
                break
            live.add(rows)
            after = int(rows[-1]["id"])
        changes: list[CoverChange] = []
        for version, site in zip(versions[1:], sites[1:], strict=True):
            changes += live.advance_to(version.effective_us)
            changes += live.switch_site(site)
        if saved is not None:
            changes += live.advance_to(start_horizon)
        if settings.bus_url is not None:
            changes = []  # the workers raise cover alerts in distributed mode
        if settings.bus_url is not None and load_versions(store) and \
                doc.source != versions[-1].source:
            # Distributed: the stored versions rule (every node has its own copy of the
            # file); a change goes through `site apply`, which hands it to the owner.
            log.warning("%s differs from the rules in force at site %s: using the stored "
                        "version (apply changes with `coverwatch site apply`)",
                        settings.site_path, doc.site.id)
            svc.doc = doc = load_site_text_document(versions[-1].source, str(settings.site_path))
            svc.book.policy, svc.sos_policy = policy_from(doc), sos_policy_from(doc)
        if doc.source != versions[-1].source:
            # The file was edited while the server was down: in force from now on.
            changes += live.switch_site(doc.site)
            versions.append(SiteVersion(live.horizon, doc.source))
            store.audit_change("server", "site.changed-while-stopped", doc.site.id,
                               {"diff": diff_sites(sites[-1], doc.site).to_dict()})
        save_versions(store, versions)
        svc._apply_changes(changes)
        # Hold the horizon for a while after a restart so clients can re-send
        # what they could not deliver while the server was down.
        svc._recover_until = now + seconds_to_us(settings.recovery_s) if saved is not None else 0
        return svc

    # -- ingest -------------------------------------------------------------

    async def ingest(
        self, rows: Sequence[dict[str, Any]], *, source: str, device: str | None = None,
        reports: Sequence[dict[str, Any]] = (),
    ) -> IngestResult:
        """Store validated event rows durably, then feed the on-time ones live.

        Each row has the store's event columns (kind, t_us, officer, …).
        Returns only after the commit, so a 2xx or an MQTT ack means durable.
        Requests that arrive while a commit is in progress are committed
        together in the next transaction (group commit): one fsync for many.

        ``reports`` are device reports (:mod:`coverwatch.server.devices`); an
        alarm among them (sos, fallDown) raises its alert in the same commit.
        """
        if not rows and not reports:
            return IngestResult(0, 0, 0)
        admit(rows, reports)  # a record the store cannot take fails its own request only
        if self.briefing is not None:  # a governed capability counts only while qualified
            self.briefing.filter_rows(rows)
        done: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        entry = (rows, source, device, done, reports)
        # Device alarms go ahead of everything else waiting (and first in any retry).
        alarm = any(rep.get("alarm") for rep in reports)
        self._waiting.insert(0 if alarm else len(self._waiting), entry)
        # The committer is its own task, so a client that hangs up mid-commit
        # cannot cancel the commit other requests are waiting on.
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting(), name="commit")
        return await done

    async def _commit_waiting(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            await self._commit_group(group)

    async def _commit_group(self, group: list[Any]) -> None:
        try:
            async with self.lock:
                now = self.clock()
                tagged: list[dict[str, Any]] = []
                reports: list[dict[str, Any]] = []
                for i, (rows, source, device, _, reps) in enumerate(group):
                    for r in rows:
                        r["source"] = source
                        r["device"] = device
                        r["received_us"] = now
                        # In distributed mode the site's stream decides what is late.
                        r["late"] = self.evaluates and self.live.is_late(int(r["t_us"]))
                        r["_request"] = i
                        tagged.append(r)
                    for rep in reps:
                        reports.append({**rep, "source": source, "received_us": now,
                                        "_request": i})
                if self.evaluates:  # a late state event is applied at the horizon
                    self.live.plan_late(tagged)
                alarms = any(rep.get("alarm") for rep in reports)
                result, failed = await in_store(
                    append_isolated, self.store, tagged, reports,
                    self._alarm_alerts if alarms else None)
                if self.evaluates:
                    self.live.add(result.rows)
                for rep in result.reports:
                    self.watch.note(rep, now)
                raised = [Alert.from_record(rec) for rec in result.alerts]
                for alert in raised:
                    self.book.adopt(alert)
                # Escalate an SOS now, not at the next tick.
                steps = self.book.tick(self.clock()) if raised else []
            self.health.commits(len(failed) < len(group), list(failed.values()))
        except Exception as e:
            self.health.committed(False, f"{type(e).__name__}: {str(e)[:200]}")
            for *_, done, _reps in group:
                if not done.done():
                    done.set_exception(e)
            return
        for alert in raised:
            self.feed.publish({"type": "alert-state", "alert": alert.to_record()})
        for r in result.rows:
            if r.get("applied_us") is not None:
                msg = late_applied_message(r)
                log.info("late %s event of %s at %s (received %s) applied live at %s",
                         msg["kind"], msg["subject"], msg["time"], msg["received"], msg["applied"])
                self.feed.publish(msg)
        if self.bus is not None:  # this gateway sends their first levels
            self.bus.raised_here.update(a.id for a in raised)
        if steps:
            self._escalating = asyncio.create_task(self._escalate(steps))
        for i, error in failed.items():  # only these senders hear of the failure
            group[i][3].set_exception(error)
        if self.bus is not None:  # answered only once the stream has them too
            try:
                await self.bus.publish([r for r in tagged if r["_request"] not in failed],
                                       result.ids)
            except Exception as e:  # the client retries; the event keys make it one event
                for *_, done, _reps in group:
                    if not done.done():
                        done.set_exception(e)
                return
        inserted = [0] * len(group)
        late = [0] * len(group)
        for r in result.rows:
            inserted[r["_request"]] += 1
            late[r["_request"]] += bool(r["late"])
        if self.site.duty_from_devices and self.briefing is not None:
            fixes = [r for r in result.rows if r["kind"] == "fix" and r.get("device")]
            if fixes:
                self._duty_task = asyncio.create_task(self._duty_from_devices(fixes))
        for i, (rows, source, _, done, _reps) in enumerate(group):
            if i in failed:
                continue
            self.ingested[source] = self.ingested.get(source, 0) + inserted[i]
            self.late_total += late[i]
            self.duplicates_total += len(rows) - inserted[i]
            if not done.done():
                done.set_result(IngestResult(inserted[i], len(rows) - inserted[i], late[i]))

    def _alarm_alerts(self, reports: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """The alerts newly stored device reports raise (runs inside their commit)."""
        out: list[tuple[dict[str, Any], str]] = []
        for rep in reports:
            kind = ALARM_ALERT_KINDS.get(str(rep.get("alarm") or "").lower())
            officer = rep.get("officer")
            if kind is None or not officer:
                continue
            received = int(rep["received_us"])
            t = rep.get("t_us")
            # An SOS buffered on an offline phone began when it was pressed.
            plausible = isinstance(t, int) and received - 7 * 86_400 * US_PER_S <= t <= received
            began = t if plausible and isinstance(t, int) else received
            rule = f"officer:{officer}"
            alert = Alert(
                id=alert_id_for(kind, "", rule, began), kind=kind, post="", rule=rule,
                lapse_start=began, alert_at=received, count=0, need=0,
                details={"officer": officer, "device": rep.get("device"),
                         "alarm": rep.get("alarm"),
                         "event_time": None if t is None else format_time(int(t)),
                         "received": format_time(received),
                         "position": self._last_position(officer, rep.get("_fix")),
                         "battery": rep.get("battery")},
            )
            out.append((alert.to_record(), "alert.raised"))
        return out

    def _last_position(self, officer: str, fix: dict[str, Any] | None) -> dict[str, Any] | None:
        """The officer's last known position (site metres), or None: "position unknown"."""
        if fix is None:  # late fixes count here: the last place they were seen
            fix = self.store.last_fix(officer)
        if fix is None:
            return None
        raw = fix.get("raw") or {}
        return {"x": fix["x"], "y": fix["y"], "accuracy_m": fix["accuracy"],
                "time": format_time(int(fix["t_us"])), "lat": raw.get("lat"),
                "lon": raw.get("lon")}

    async def _duty_from_devices(self, fixes: list[dict[str, Any]]) -> None:
        """Site option ``duty_from_devices``: a device fix inside its officer's rostered
        shift puts them on duty (source ``device-in-shift``) unless they are on duty
        already or booked off themselves during this shift; the roster end ends it."""
        from coverwatch.domain.briefing import valid_qualifications

        for fix in fixes:
            officer, t = fix["officer"], int(fix["t_us"])
            shift = next((s for s in self.briefing.shifts
                          if s.officer == officer and s.covers(t)), None)
            if shift is None:
                continue
            last = await asyncio.to_thread(self.store.last_duty_event, officer, t)
            if last is not None and (last["on"] or last["t_us"] >= shift.start):
                continue  # on duty, or they (or the roster) said otherwise in this shift
            caps = sorted(valid_qualifications(officer, t, self.briefing.qualifications))
            row = {"kind": "duty", "t_us": t, "officer": officer, "x": None, "y": None,
                   "accuracy": None, "post": None, "flag": None, "on": True, "open": None,
                   "capabilities": caps,
                   "raw": {"t": format_time(t), "kind": "duty", "officer": officer, "on": True,
                           "capabilities": caps, "shift": shift.id,
                           "reason": "device reporting during the rostered shift"}}
            await self.ingest([row], source="device-in-shift", device=fix.get("device"))

    def _check_silent(self, now: int) -> None:
        """Raise "device-silent" alerts for rostered officers whose devices went quiet;
        resolve them when a device reports again or the shift is over (under the lock)."""
        from coverwatch.server.devices import silent_officers

        assert self.site.silent_after_s is not None
        on_duty = {o.officer for o in self.shown.officers() if o.on_duty}
        silent = silent_officers(self.briefing.shifts, self.watch, on_duty, now,
                                 seconds_to_us(self.site.silent_after_s))
        wanted = {alert_id_for(SILENT, post, f"device:{officer}", since): (officer, since, post)
                  for officer, (since, post) in silent.items()}
        touched: list[Alert] = []
        for alert_id, (officer, since, post) in wanted.items():
            if alert_id in self.book:
                continue
            last = self.store.last_fix(officer)
            devices = self.watch.by_officer().get(officer, [])
            battery = next((s.report.get("battery") for _, s in devices
                            if s.report and s.report.get("battery") is not None), None)
            alert = self.book.on_alert(
                post, f"device:{officer}", since, since + seconds_to_us(self.site.silent_after_s),
                0, 1, kind=SILENT, details={
                    "officer": officer, "devices": [d for d, _ in devices],
                    "last_report": None if not devices else format_time(
                        max(s.last_received for _, s in devices)),
                    "position": self._last_position(officer, last), "battery": battery})
            self.store.record_alert_event(alert.to_record(), actor="devices",
                                          action="alert.raised")
            touched.append(alert)
        for alert in self.book.alerts():
            live = alert.state in (AlertState.OPEN, AlertState.ACKNOWLEDGED)
            if alert.kind != SILENT or alert.id in wanted or not live:
                continue
            trial = Alert.from_record(alert.to_record())
            trial.resolve(max(now, trial.lapse_start))
            self.store.record_alert_event(trial.to_record(), actor="devices",
                                          action="alert.resolved")
            self.book.restore(trial)
            touched.append(trial)
        for alert in touched:
            self.feed.publish({"type": "alert-state", "alert": alert.to_record()})

    def _policy_for(self, alert: Alert) -> EscalationPolicy:
        return self.sos_policy if alert.kind in DEVICE_ALARM_KINDS else self.book.policy

    # -- time ---------------------------------------------------------------

    async def tick(self) -> list[CoverChange]:
        """Advance the watermark to now; raise, resolve and escalate alerts."""
        async with self.lock:
            now = self.clock()
            if now < self._recover_until or not self.evaluates:
                changes: list[CoverChange] = []
            else:
                changes = self.live.advance_to(self.watch.horizon(now))
            horizon = self.live.horizon
            # Alert changes under the lock too, so a person's acknowledgement
            # (also under it) cannot overwrite a resolution made meanwhile.
            await in_store(self._apply_changes, changes)
            if self.site.silent_after_s is not None and self.briefing is not None:
                if self.evaluates:
                    await asyncio.to_thread(self._check_silent, now)
                elif self.bus is not None and await self.bus.silent_check_due(now):
                    # Distributed: the site's owner checks, from the stored reports.
                    await asyncio.to_thread(self._check_silent, now)
            steps = self.book.tick(now)
        if steps:
            await self._escalate(steps)
        for ch in changes:
            if ch.kind == "lapse-ended":
                ended = self.book.find(ch.post, ch.rule, ch.lapse_start)
                if ended is not None:
                    await self.outbox.settle(ended)
        if now - self._delays_logged >= 60 * US_PER_S:
            self._delays_logged = now
            for device, d in self.watch.delays().items():
                log.info("upload delay of %s: median %.1f s, p95 %.1f s, max %.1f s (%d readings)",
                         device, d["median_s"], d["p95_s"], d["max_s"], int(d["count"]))
        if self.evaluates and (horizon - self._last_saved_horizon >= US_PER_S or changes):
            try:
                await asyncio.to_thread(self.store.set_state, _HORIZON_KEY, str(horizon))
            except Exception as e:
                self.health.committed(False, f"{type(e).__name__}: {str(e)[:200]}")
                raise
            self._last_saved_horizon = horizon
        self.health.ticked()
        return changes

    async def run_ticker(self) -> None:
        """Background task: tick forever (cancelled at shutdown)."""
        while True:
            try:
                await self.tick()
            except Exception:  # a bad tick must not stop supervision
                log.exception("tick failed")
            await asyncio.sleep(self.settings.tick_s)

    # -- alerts -------------------------------------------------------------

    def _need(self, post: str, rule: str) -> int:
        for p, r in self.site.rules():
            if p.id == post and r.id == rule:
                return r.need
        return 0

    def _apply_changes(self, changes: Sequence[CoverChange]) -> None:
        """Publish cover changes and raise/resolve alerts (runs in a worker thread)."""
        touched: list[Alert] = []
        for ch in changes:
            self.feed.publish(
                {"type": ch.kind, "post": ch.post, "rule": ch.rule, "t": format_time(ch.t),
                 "lapse_start": format_time(ch.lapse_start), "count": ch.count}
            )
            if ch.kind == "alert":
                before = self.book.find(ch.post, ch.rule, ch.lapse_start)
                alert = self.book.on_alert(
                    ch.post, ch.rule, ch.lapse_start, ch.t, ch.count, self._need(ch.post, ch.rule)
                )
                if before is None:
                    touched.append(alert)
                    self.store.record_alert_event(alert.to_record(), actor="engine",
                                                  action="alert.raised")
            elif ch.kind == "lapse-ended":
                ended = self.book.on_lapse_ended(ch.post, ch.rule, ch.lapse_start, ch.t)
                if ended is not None:
                    touched.append(ended)
                    self.store.record_alert_event(ended.to_record(), actor="engine",
                                                  action="alert.resolved")
        for alert in touched:
            self.feed.publish({"type": "alert-state", "alert": alert.to_record()})

    async def _escalate(self, steps: Sequence[Escalation]) -> None:
        if self.bus is not None:  # each step from one node only, and never twice
            steps = await self.bus.escalating(steps)
        # "level-due", not "escalated": whether anyone was reached is the deliveries' to say.
        for step in steps:
            alert = self.book.get(step.alert_id)
            await in_store(
                self.store.record_alert_event, alert.to_record(), actor="engine",
                action=f"alert.level-due.{step.level}",
            )
            self.feed.publish({"type": "escalation", "alert": alert.to_record(),
                               "level": step.level, "targets": list(step.targets)})
        self.outbox.submit(steps)  # in the background: a slow address never holds the ticker

    async def acknowledge(self, alert_id: str, user: str, note: str) -> Alert:
        return await self._person_acts(alert_id, user, note, "acknowledged")

    async def close_alert(self, alert_id: str, user: str, note: str) -> Alert:
        return await self._person_acts(alert_id, user, note, "closed")

    async def _person_acts(self, alert_id: str, user: str, note: str, what: str) -> Alert:
        # Decide on a copy and persist it first: memory changes only once the store agrees.
        # Under the lock, so the ticker cannot resolve or escalate the alert in between.
        async with self.lock:
            trial = Alert.from_record(self.book.get(alert_id).to_record())
            if what == "acknowledged":
                trial.acknowledge(user, note, self.clock())
            else:
                trial.close(user, note, self.clock())
            await asyncio.to_thread(self.store.record_alert_event, trial.to_record(),
                                    actor=user, action=f"alert.{what}")
            self.book.restore(trial)
        self.feed.publish({"type": "alert-state", "alert": trial.to_record()})
        await self.outbox.settle(trial)
        return trial

    def adopt_site(self, doc: SiteDocument) -> None:
        """Make ``doc`` the site in force (the engine has already switched)."""
        self.doc = doc
        self.book.policy = policy_from(doc)
        with contextlib.suppress(RuntimeError):  # no loop: start-up checks once it runs
            self.outbox.spawn(self.outbox.check_targets())
        self.sos_policy = sos_policy_from(doc)

    async def reload_site(self, actor: str, roles: frozenset[str], reason: str = "") -> Any:
        """Re-read the site file from disk and apply it like any other change.

        Raises SiteFileError for an invalid file (the running site is untouched)
        and ApplyRefused when the caller may not apply this change.
        """
        text = await asyncio.to_thread(self.settings.site_path.read_text, encoding="utf-8")
        return await apply_site(self, text, actor=actor, roles=roles, reason=reason)

    # -- views --------------------------------------------------------------

    def engine_lag_s(self) -> float:
        """How far the horizon trails the wall clock (includes the allowed lateness)."""
        if not self.evaluates:
            return 0.0  # the workers' lag is the bus's (docs/scale.md)
        return max(0.0, (self.clock() - self.live.horizon) / US_PER_S)
