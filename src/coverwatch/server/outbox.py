"""Sending what the alert book decided, and saying truthfully whether it arrived.

Each escalation step, dispatch and server alert is sent in its own task, so a slow or
refusing address never holds the ticker. Every attempt becomes a delivery row (stored and
audited), shown per level on the alert. A level at which nobody could be reached counts as
failed: the alert moves to its next level at once, and a ``notification-failure`` alert goes
to every supervisor and admin who can be reached (if that cannot be delivered either, it
stays on the board and in the log: it is never re-raised).

The outbox holds no unit: it sees its site through a
:class:`~coverwatch.server.ports.SiteView` and changes the alert book only by
commands (:mod:`coverwatch.server.commands`: ``EscalateNow``, ``RaiseDirect``,
``ResolveDirect``), carried out by :mod:`coverwatch.server.handlers.alerts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from coverwatch.domain.alerts import (
    DEVICE_ALARM_KINDS,
    DIRECT_KINDS,
    Alert,
    AlertState,
    Escalation,
    EscalationPolicy,
    parse_target,
)
from coverwatch.domain.incidents import GROUPED_KINDS, Incident, IncidentBook
from coverwatch.domain.shelving import ShelfBook
from coverwatch.domain.supervision import DIRECT_TARGETS, open_direct, undelivered_steps
from coverwatch.domain.time import format_time
from coverwatch.server.commands import EscalateNow, RaiseDirect, ResolveDirect
from coverwatch.server.happenings import (
    AlertSettled,
    DirectRaised,
    LevelsDue,
    SiteAdopted,
    Ticked,
)
from coverwatch.server.pools import in_store
from coverwatch.storage import DeliveryRecord

if TYPE_CHECKING:
    from coverwatch.notify.notifier import Notifier
    from coverwatch.server.ports import SiteView
    from coverwatch.server.subscribers import Subscribers
    from coverwatch.storage import Store

__all__ = ["Outbox", "TargetProblem", "delivery_outcome", "people_resolver",
           "unreachable_targets"]

log = logging.getLogger("coverwatch.server")

_TARGET_RULE = "target:"


@dataclass(frozen=True, slots=True)
class TargetProblem:
    """An escalation target that reaches nobody with a contact."""

    level: int
    target: str
    reason: str

    def __str__(self) -> str:
        return f"escalation level {self.level + 1}: {self.target} {self.reason}"


def unreachable_targets(policy: EscalationPolicy, store: Store) -> list[TargetProblem]:
    """Targets (``role:``/``user:``) that resolve to nobody with a contact.

    URL targets are not checked (only sending can tell whether they work).
    """
    out: list[TargetProblem] = []
    for level, spec in enumerate(policy.levels):
        for target in spec.notify:
            try:
                kind, _ = parse_target(target)
            except ValueError as exc:
                out.append(TargetProblem(level, target, str(exc)))
                continue
            if kind not in ("role", "user"):
                continue
            people = store.reach(target)
            if not people:
                what = "no active user holds this role" if kind == "role" \
                    else "there is no active user of this name"
                out.append(TargetProblem(level, target, f"reaches nobody: {what}"))
            elif not any(p.urls for p in people):
                names = ", ".join(p.person for p in people)
                out.append(TargetProblem(
                    level, target, f"reaches nobody: {names} ha{'s' if len(people) == 1 else 've'}"
                    " no contact address (coverwatch users set NAME --notify URL)"))
    return out


def people_resolver(store: Store) -> Callable[[str], list[tuple[str, str | None]]]:
    """The notifier's resolver: (person, URL) pairs; (person, None) for one without contacts."""

    def resolve(target: str) -> list[tuple[str, str | None]]:
        return [(p.person, u) for p in store.reach(target) for u in (p.urls or (None,))]

    return resolve


def _records(deliveries: Sequence[Any], purpose: str, at: int) -> list[DeliveryRecord]:
    # Each delivery at its own end (``ended``, monotonic), not when the slowest ended.
    now = time.monotonic()
    return [
        DeliveryRecord(d.alert_id, d.level, purpose, ", ".join(d.targets), d.person, d.to,
                       d.ok, d.error, d.attempts,
                       at - max(0, int((now - getattr(d, "ended", now)) * 1_000_000)))
        for d in deliveries
    ]


def delivery_outcome(ok: bool, error: str | None) -> str:
    """``delivered``, ``refused`` (no connection), ``timed out``, ``rejected`` (the
    service answered no, e.g. HTTP 503) or ``failed`` (the service gave no reason)."""
    if ok:
        return "delivered"
    text = (error or "").lower()
    if "timeout" in text or "timed out" in text:
        return "timed out"
    if "connecterror" in text or "refused" in text or "connection" in text:
        return "refused"
    if text.startswith("http ") or "did not accept" in text:
        return "rejected" if text.startswith("http ") else "failed"
    return "failed"


class Outbox:
    """The server's sender: escalation steps, dispatches, server alerts."""

    def __init__(self, view: SiteView, store: Store, notifier: Notifier | None) -> None:
        self.view = view
        self.store = store
        self._notifier = notifier
        self.by_alert: dict[str, list[DeliveryRecord]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Dispatches per alert (officer, by, at, message), for the alert card.
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self.delivered_total = 0
        self.failed_total = 0
        self._resent: set[tuple[str, int, str]] = set()
        # Floods: alerts of one cause told once per level (domain/incidents.py).
        self.incidents = IncidentBook()
        self._incident_lock = asyncio.Lock()  # incident saves in the order they were made
        self.shelves = ShelfBook()  # alerts a person shelved, with a reason (server/shelves.py)
        self.held: dict[str, list[Escalation]] = {}  # steps a shelf holds, sent when it ends

    def load(self, reads: Any = None, incidents_since: int | None = None) -> None:
        """Read the stored deliveries, dispatches, shelves and incidents (at start-up, and in
        distributed mode when a node takes a site over), from ``reads`` if given (a start's
        rows of many sites, storage/startreads.py); with ``incidents_since``, the incidents
        started since then (the book's alerts') and older ones with a member still open."""
        from coverwatch.server.shelves import load_shelves

        src = self.store if reads is None else reads
        by_alert: dict[str, list[DeliveryRecord]] = {}
        sent: dict[str, list[dict[str, Any]]] = {}  # built whole, then swapped in (a thread)
        for rec in src.load_deliveries():
            by_alert.setdefault(rec.alert_id, []).append(rec)
        for d in src.load_dispatches():
            sent.setdefault(d["alert_id"], []).append(_dispatch_json(d))
        self.by_alert, self.sent = by_alert, sent
        self.shelves = load_shelves(src)
        records = src.load_incidents(incidents_since)
        if incidents_since is not None:
            # A long flood's incident with a member open is held, or its next level is told apart.
            members = {m for r in records for m in r.get("members", ())}
            missing = [a.id for a in self.view.alerts.alerts()
                       if a.kind in GROUPED_KINDS and a.state is not AlertState.CLOSED
                       and a.id not in members]
            if missing:
                records = self.store.incidents_holding(missing, incidents_since) + records
        self.incidents = IncidentBook()
        self.incidents.restore(Incident.from_record(r) for r in records)

    def resend_undelivered(self, min_age_s: float = 0.0) -> int:
        """Send again each level recorded as due that has no delivery recorded (the
        server stopped while sending it); a recorded delivery is never sent again."""
        from coverwatch.notify.notifier import redact_url

        recorded: dict[str, dict[int, set[str]]] = {}
        for aid, recs in self.by_alert.items():
            for r in recs:
                if r.purpose == "escalation":  # one delivery may serve several targets
                    recorded.setdefault(aid, {}).setdefault(r.level, set()).update(
                        r.target.split(", "))
        steps = undelivered_steps(
            self.view.alerts, recorded, self.view.clock(), int(min_age_s * 1_000_000),
            shown=lambda t: redact_url(t) if "://" in t else t)
        # Once per process: a resend still in flight has no record yet either.
        fresh = []
        for step in steps:
            targets = tuple(t for t in step.targets
                            if (step.alert_id, step.level, t) not in self._resent)
            self._resent.update((step.alert_id, step.level, t) for t in targets)
            if targets:
                fresh.append(replace(step, targets=targets))
        if fresh:
            log.warning("%d escalation level(s) were due but never recorded as sent: "
                        "sending them now", len(fresh))
            self.submit(fresh)
        return len(fresh)

    @property
    def notifier(self) -> Notifier:
        """The site's notifier (the sending paths run only where there is one)."""
        notifier = self._notifier
        if notifier is None:
            raise RuntimeError("this site has no notifier")
        return notifier

    def subscribe(self, subscribers: Subscribers) -> None:
        """Hear of levels falling due (send them), alerts about supervision raised (send
        them once), alerts settling (settle their failed notices), new rules (check
        their targets) and the ticker's steps (send what an ended shelf held back)."""

        def due(h: LevelsDue) -> None:
            self.submit(h.steps)

        async def settled(h: AlertSettled) -> None:
            await self.settle(h.alert)

        def direct(h: DirectRaised) -> None:
            if self._notifier is not None:
                self.spawn(self._send_direct(h.alert))

        def ticked(h: Ticked) -> None:
            from coverwatch.server.shelves import released

            again = released(self.shelves, self.held, h.at, self.view.alerts)
            if again:  # a shelf ended: what it held back goes out now, each on its own
                self.submit(again, group=False)

        def adopted(h: SiteAdopted) -> None:
            with contextlib.suppress(RuntimeError):  # no loop: start-up checks once it runs
                self.spawn(self.check_targets())

        subscribers.subscribe(LevelsDue, due)
        subscribers.subscribe(DirectRaised, direct)
        subscribers.subscribe(AlertSettled, settled)
        subscribers.subscribe(SiteAdopted, adopted)
        subscribers.subscribe(Ticked, ticked)

    # -- tasks --------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sending failed unexpectedly", exc_info=task.exception())

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until everything queued (and what it led to) has been sent."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- views --------------------------------------------------------------

    def notified(self, alert_id: str) -> list[dict[str, Any]]:
        """Per level: who was notified, how, and whether it worked."""
        levels: dict[int, list[DeliveryRecord]] = {}
        for rec in self.by_alert.get(alert_id, ()):
            if rec.purpose != "dispatch":
                levels.setdefault(rec.level, []).append(rec)
        return [
            {"level": level, "ok": any(r.ok for r in recs),
             "deliveries": [_delivery_json(r) for r in recs]}
            for level, recs in sorted(levels.items())
        ]

    def dispatch_deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        return [_delivery_json(r) for r in self.by_alert.get(alert_id, ())
                if r.purpose == "dispatch"]

    def reached_level(self, alert_id: str) -> int | None:
        """The highest level at which at least one delivery succeeded."""
        ok = [r.level for r in self.by_alert.get(alert_id, ())
              if r.ok and r.purpose == "escalation"]
        return max(ok) if ok else None

    # -- recording ----------------------------------------------------------

    async def _record(self, deliveries: Sequence[Any], purpose: str) -> list[DeliveryRecord]:
        recs = _records(deliveries, purpose, self.view.clock())
        try:
            await in_store(self.store.record_deliveries, recs)
        except Exception:  # keep them in memory: the card must still tell the truth
            log.exception("could not store %d delivery record(s)", len(recs))
        for rec in recs:
            self.by_alert.setdefault(rec.alert_id, []).append(rec)
            if rec.ok:
                self.delivered_total += 1
            else:
                self.failed_total += 1
        if recs:
            alert_id = recs[0].alert_id
            self.view.feed.publish({"type": "notified", "alert_id": alert_id,
                                   "purpose": purpose, "notified": self.notified(alert_id),
                                   "dispatches": self.dispatch_deliveries(alert_id)})
        return recs

    # -- escalation ---------------------------------------------------------

    def submit(self, steps: Sequence[Escalation], *, group: bool = True) -> None:
        """Send escalation steps in the background; a flood's steps as one per incident
        (``group=False``: each on its own, as a shelf's held steps when it ends, which
        an incident told meanwhile did not name)."""
        from coverwatch.server.incidentsend import send_incident
        from coverwatch.server.shelves import held_back

        ready = held_back(self.shelves, self.held, self.view.clock(), steps)
        solo, grouped = self.incidents.fold(ready) if group else (ready, [])
        self._store_incidents()
        if self._notifier is None:
            return
        alarms: dict[str, list[Escalation]] = {}
        for step in solo:
            if step.kind in DEVICE_ALARM_KINDS:
                alarms.setdefault(step.alert_id, []).append(step)
            else:
                self.spawn(self._send_step(step))
        for together in alarms.values():  # several levels at once: judged together
            self.spawn(self._send_alarm(together) if len(together) > 1
                       else self._send_step(together[0]))
        for istep in grouped:
            self.spawn(send_incident(self, istep))

    def _store_incidents(self) -> None:
        """Store the incidents a fold formed, joined or told (a restart shows them as they
        were); in the store's pool, one save after another so the latest is kept."""
        records = [i.to_record() for i in self.incidents.take_changed()]
        if not records:
            return
        from coverwatch.server.pools import in_store

        async def save() -> None:
            async with self._incident_lock:
                try:
                    await in_store(self.store.save_incidents, records)
                except Exception:  # the screen still groups them; a restart may not
                    log.exception("could not store %d incident(s)", len(records))
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no running loop (start-up): store them here
            self.store.save_incidents(records)
            return
        self.spawn(save())

    async def _send_alarm(self, steps: Sequence[Escalation]) -> None:
        """An SOS's levels, sent at once: only if none reached anybody is it a failure
        (one ``notification-failure``, not one per level that failed)."""
        sent = await asyncio.gather(*(self.notifier.send(step) for step in steps))
        reached = False
        for deliveries in sent:
            recs = await self._record(deliveries, "escalation")
            reached = reached or any(r.ok for r in recs)
        if reached:
            return
        alert = self.view.alerts.get(steps[0].alert_id)
        if not alert.escalating:
            return
        reasons = "; ".join(f"{', '.join(d.targets)}{f' ({d.person})' if d.person else ''}: "
                            f"{d.error}" for ds in sent for d in ds)
        detail = (f"Nobody could be told about {alert.kind} {alert.rule} at any escalation "
                  f"level: {reasons or 'no targets'}.")
        await self.raise_direct("notification-failure", alert.post, alert.rule, detail,
                                about=alert.id)

    async def _send_step(self, step: Escalation) -> None:
        recs = await self._record(await self.notifier.send(step), "escalation")
        if any(r.ok for r in recs):
            return
        done = await self.view.execute(EscalateNow(step.alert_id, step.level))
        alert, nxt = done.alerts[0], done.step
        if nxt is not None:
            log.warning("alert %s: nobody reached at level %d; level %d now", alert.id,
                        step.level + 1, nxt.level + 1)
            self.spawn(self._send_step(nxt))
        if alert.kind in DIRECT_KINDS or not alert.escalating:
            return  # no loops; and an owned or resolved alert has someone on it
        reasons = "; ".join(
            f"{r.target}{f' ({r.person})' if r.person else ''}: {r.error}" for r in recs)
        detail = (f"Nobody could be told about {alert.kind} {alert.post} / {alert.rule} at "
                  f"escalation level {step.level + 1}: {reasons or 'no targets'}.")
        await self.raise_direct("notification-failure", alert.post, alert.rule, detail,
                                about=alert.id)

    # -- alerts about the server itself ------------------------------------------

    async def raise_direct(self, kind: str, post: str, rule: str, detail: str,
                           about: str | None = None) -> Alert:
        """Raise a ``system`` / ``notification-failure`` alert (sent once: :meth:`subscribe`)."""
        done = await self.view.execute(RaiseDirect(kind, post, rule, detail, about))
        return done.alerts[0]

    async def _send_direct(self, alert: Alert) -> None:
        from coverwatch.notify.notifier import Message

        title = f"{alert.kind.upper()}: {alert.post + ' / ' if alert.post else ''}{alert.rule}"
        message = Message(alert.id, 0, DIRECT_TARGETS, title, alert.detail, {
            "alert_id": alert.id, "kind": alert.kind, "post": alert.post, "rule": alert.rule,
            "about": alert.about, "at": format_time(alert.alert_at),
        })
        recs = await self._record(await self.notifier.send_message(message), "direct")
        if not any(r.ok for r in recs):
            log.error("%s alert %s reached nobody; it stays on the board (not re-raised)",
                      alert.kind, alert.id)

    async def resolve_direct(self, alert: Alert, why: str) -> None:
        """Resolve a direct alert whose cause has gone (persisted, published)."""
        await self.view.execute(ResolveDirect(alert.id, why))

    async def settle(self, alert: Alert) -> None:
        """An alert left "open" (owned or resolved): its notification failures are settled."""
        for failure in open_direct(self.view.alerts, "notification-failure", about=alert.id):
            await self.resolve_direct(failure, f"alert {alert.id} is {alert.state}")

    async def check_targets(self) -> list[TargetProblem]:
        """Raise a ``system`` alert per escalation target that reaches nobody;
        resolve those whose target now reaches someone (or is gone)."""
        problems = await asyncio.to_thread(unreachable_targets, self.view.alerts.policy,
                                           self.store)
        wanted = {f"{_TARGET_RULE}{p.target}": p for p in problems}
        open_now = {a.rule: a for a in open_direct(self.view.alerts, "system")
                    if a.rule.startswith(_TARGET_RULE)}
        for rule, problem in wanted.items():
            if rule not in open_now:
                await self.raise_direct("system", "", rule, f"{problem}.")
        for rule, alert in open_now.items():
            if rule not in wanted:
                await self.resolve_direct(alert, "the target reaches someone now")
        return problems

    # -- dispatch -----------------------------------------------------------

    async def dispatch(self, alert: Alert, officer: str, by: str, note: str) -> dict[str, Any]:
        """Send ``officer`` to the alert's post: stored, audited, then sent to their contacts."""
        from coverwatch.notify.notifier import Message

        try:
            post = self.view.site().post(alert.post)
            name = post.name or post.id
        except KeyError:
            name = alert.post
        text = (f"Go to {name} now: {alert.rule} has {alert.count} of {alert.need} needed. "
                f"Sent by {by}.{' ' + note.strip() if note.strip() else ''}")
        record = await asyncio.to_thread(self.store.record_dispatch, alert.id, officer,
                                         alert.post, text, by, self.view.clock())
        self.sent.setdefault(alert.id, []).append(_dispatch_json(record))
        self.view.feed.publish({"type": "dispatch", "alert_id": alert.id, "officer": officer,
                          "post": alert.post, "by": by, "message": text})
        if self._notifier is not None:
            message = Message(alert.id, -1, (f"user:{officer}",), f"DISPATCH {name}", text, {
                "alert_id": alert.id, "kind": "dispatch", "post": alert.post,
                "rule": alert.rule, "officer": officer, "by": by,
            })

            async def send() -> None:
                await self._record(await self.notifier.send_message(message), "dispatch")

            self.spawn(send())
        return record


def _dispatch_json(d: dict[str, Any]) -> dict[str, Any]:
    return {"officer": d["officer"], "post": d["post"], "by": d["by_user"],
            "message": d["message"], "at": format_time(int(d["at_us"]))}


def _delivery_json(rec: DeliveryRecord) -> dict[str, Any]:
    return {
        "target": rec.target, "person": rec.person, "address": rec.address,
        "channel": rec.address.partition("://")[0] if rec.address else None,
        "outcome": delivery_outcome(rec.ok, rec.error), "error": rec.error,
        "attempts": rec.attempts, "at": format_time(rec.at_us),
    }
