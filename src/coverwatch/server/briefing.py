"""The server's briefing service: orders versions and acknowledgements, rosters,
qualifications, and the "unbriefed" alert.

One :class:`Briefing` per site, built by :func:`coverwatch.server.wiring.briefing_for`
(kept as ``SiteUnit.briefing`` for the routes); it sees its site through a
:class:`~coverwatch.server.ports.SiteView`, puts officers on and off duty through the
ingest handler it is given, and raises alerts by command (``KeepAlerts``). It keeps
rosters, qualifications, issued orders versions and acknowledgements in memory
(loaded from the store, written through to it), and a step that the process's upkeep
(server/upkeep.py) runs:

* records a new orders version whenever the running site's orders change;
* emits the duty events a roster implies (source ``roster``) and re-states an
  on-duty officer's capabilities when a qualification expires (source
  ``qualifications``), through the normal ingest path, just before the
  watermark reaches them;
* raises and resolves "unbriefed" alerts (kind ``unbriefed``, rule
  ``orders:<officer>``) in the same alert book as lapse alerts.

The ingest path calls :meth:`Briefing.filter_rows` so that a governed
capability (see :mod:`coverwatch.domain.briefing`) counts only while valid.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coverwatch.domain.briefing import (
    Qualification,
    Shift,
    assignment_problems,
    counted_capabilities,
    governed_capabilities,
    qualification_expiries,
    roster_boundaries,
    unbriefed,
    valid_qualifications,
)
from coverwatch.domain.orders import PostOrders, orders_changes, site_orders
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time, seconds_to_us
from coverwatch.errors import CoverwatchError
from coverwatch.formats.roster import BriefingInputError
from coverwatch.server.commands import KeepAlerts, WantedAlert
from coverwatch.server.happenings import FixesStored
from coverwatch.storage.briefing import Acknowledgement, OrdersVersion

if TYPE_CHECKING:
    from coverwatch.server.ports import Ingest, SiteView
    from coverwatch.server.subscribers import Subscribers
    from coverwatch.storage import Store
    from coverwatch.storage.startreads import SiteStart

__all__ = [
    "UNBRIEFED",
    "Briefing",
    "RosterRefusedError",
    "StaleVersionError",
    "UnknownPostError",
    "unbriefed_rule",
]

log = logging.getLogger("coverwatch.server")

UNBRIEFED = "unbriefed"
ROSTER_SOURCE = "roster"
QUALIFICATION_SOURCE = "qualifications"
# Roster and expiry events are emitted this far ahead of the wall clock, so they
# are in the store before the watermark (now - lateness) reaches them.
LOOKAHEAD_S = 1.0


class RosterRefusedError(BriefingInputError):
    """A shift may not be rostered (e.g. the officer lacks a needed qualification)."""


class StaleVersionError(CoverwatchError):
    """An acknowledgement named a version that is not the post's current one."""

    def __init__(self, post: str, version: str, current: str) -> None:
        self.post, self.version, self.current = post, version, current
        super().__init__(f"orders {version} of post {post} are not current; the current "
                         f"version is {current}: read those and acknowledge them")


class UnknownPostError(CoverwatchError, LookupError):
    """No post with that id in the running site."""


def unbriefed_rule(officer: str) -> str:
    """The alert ``rule`` of an unbriefed alert: one alert per officer, post and start."""
    return f"orders:{officer}"


# -- the service -------------------------------------------------------------------


@dataclass
class Briefing:
    """Rosters, qualifications, orders versions and acknowledgements of a running server."""

    view: SiteView
    store: Store
    ingest: Ingest  # this site's ingest handler
    reacknowledge_s: float = 600.0
    step_s: float = 0.2
    shifts: list[Shift] = field(default_factory=list)
    qualifications: list[Qualification] = field(default_factory=list)
    versions: dict[str, list[OrdersVersion]] = field(default_factory=dict)
    acks: list[Acknowledgement] = field(default_factory=list)
    orders: dict[str, PostOrders] = field(default_factory=dict)
    _site: Site | None = None
    _governed: frozenset[str] = frozenset()
    _emitted: set[tuple[str, str, int]] = field(default_factory=set)
    _on_since: dict[str, int] = field(default_factory=dict)

    # -- start-up and site changes ---------------------------------------------------

    @classmethod
    def load(cls, view: SiteView, store: Store, ingest: Ingest,
             reacknowledge_s: float = 600.0, reads: SiteStart | None = None) -> Briefing:
        """Load everything from the store (or a start's ``reads`` of it) and record the
        running site's versions."""
        b = cls(view, store, ingest, reacknowledge_s)
        src: Store | SiteStart = store if reads is None else reads
        b.shifts = src.list_shifts()
        b.qualifications = src.list_qualifications()
        for v in src.orders_versions():
            b.versions.setdefault(v.post, []).append(v)
        b.acks = src.acknowledgements()
        b.sync_site()
        return b

    def sync_site(self) -> bool:
        """If the running site changed, issue the versions of its changed orders."""
        site = self.view.site()
        if site is self._site:
            return False
        old, self._site = self._site, site
        now = self.view.clock()
        changes = {c.post_id: c for c in orders_changes(old, site)} if old is not None else {}
        self.orders = {o.post_id: o for o in site_orders(site)}
        issued: list[OrdersVersion] = []
        for post_id, orders in self.orders.items():
            history = self.versions.get(post_id, [])
            if history and history[-1].version == orders.version:
                continue
            change = changes.get(post_id)
            what = ("first issued",) if not history else (
                None if change is None else change.what)
            issued.append(OrdersVersion(post_id, orders.version, now, orders.text, what))
        if issued:
            self.store.record_orders_versions(issued, actor="server")
            for v in issued:
                history = [h for h in self.versions.get(v.post, []) if h.version != v.version]
                self.versions[v.post] = [*history, v]
        self._governed = governed_capabilities(site, self.qualifications)
        return True

    def current(self) -> dict[str, tuple[str, int]]:
        """Each post's current version and since when it is current."""
        return {p: (hist[-1].version, hist[-1].since) for p, hist in self.versions.items()
                if p in self.orders and hist and hist[-1].version == self.orders[p].version}

    # -- ingest hook -----------------------------------------------------------------

    def filter_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Drop governed capabilities an officer holds no valid qualification for (in place).

        The row's ``raw`` keeps what was claimed; the stored capabilities are what counts.
        """
        if not self._governed:
            return
        for r in rows:
            if r.get("kind") != "duty" or not r.get("on") or not r.get("capabilities"):
                continue
            claimed = r["capabilities"]
            if isinstance(claimed, str):
                claimed = [c for c in claimed.split(",") if c]
            counted = counted_capabilities(claimed, r["officer"], int(r["t_us"]),
                                           self._governed, self.qualifications)
            if counted != frozenset(claimed):
                r["capabilities"] = sorted(counted)

    # -- rosters and qualifications -----------------------------------------------------

    def check_shifts(self, shifts: Sequence[Shift]) -> None:
        """Raise :class:`RosterRefusedError` listing every shift that may not be rostered."""
        problems = []
        for s in shifts:
            problems += assignment_problems(self.view.site(), s, self.qualifications)
        if problems:
            raise RosterRefusedError(problems)

    async def add_shifts(self, shifts: Sequence[Shift], actor: str) -> list[Shift]:
        self.check_shifts(shifts)
        stored = await asyncio.to_thread(self.store.add_shifts, shifts, actor=actor)
        self.shifts = sorted([*self.shifts, *stored], key=lambda s: (s.start, s.id))
        return stored

    async def delete_shift(self, shift_id: int, actor: str) -> Shift:
        """Remove a shift. A running shift ends now: its officer goes off duty (roster)."""
        shift = await asyncio.to_thread(self.store.delete_shift, shift_id, actor=actor)
        self.shifts = [s for s in self.shifts if s.id != shift_id]
        now = self.view.clock()
        if shift.covers(now) and (shift.officer, "start", shift.start) in self._emitted:
            t = max(now, self.view.shown().horizon)
            await self.ingest([_duty_row(shift.officer, t, False, (), {
                "reason": "shift removed", "shift": shift.id})], source=ROSTER_SOURCE)
        return shift

    async def set_qualifications(self, records: Sequence[Qualification], actor: str) -> None:
        await asyncio.to_thread(self.store.set_qualifications, records, actor=actor)
        keys = {(q.officer, q.name) for q in records}
        self.qualifications = [q for q in self.qualifications
                               if (q.officer, q.name) not in keys] + list(records)
        self._governed = governed_capabilities(self.view.site(), self.qualifications)

    # -- acknowledgements --------------------------------------------------------------

    def acknowledged_versions(self) -> dict[tuple[str, str], frozenset[str]]:
        out: dict[tuple[str, str], set[str]] = {}
        for a in self.acks:
            out.setdefault((a.officer, a.post), set()).add(a.version)
        return {k: frozenset(v) for k, v in out.items()}

    def last_ack(self, officer: str, post: str) -> Acknowledgement | None:
        found = [a for a in self.acks if a.officer == officer and a.post == post]
        return found[-1] if found else None

    async def acknowledge(
        self, officer: str, post: str, version: str, *, via: str,
        device: str | None = None, user: str | None = None,
    ) -> Acknowledgement:
        """Record that ``officer`` read and understood ``version`` of ``post``'s orders."""
        current = self.current().get(post)
        if post not in self.orders or current is None:
            raise UnknownPostError(f"no post {post!r}")
        if version != current[0]:
            raise StaleVersionError(post, version, current[0])
        ack = await asyncio.to_thread(
            self.store.record_acknowledgement, officer, post, version,
            at_us=self.view.clock(), via=via, device=device, user=user)
        self.acks.append(ack)
        await self.evaluate()
        return ack

    def changes_since(self, post: str, version: str | None) -> dict[str, Any]:
        """What changed in ``post``'s orders since ``version`` (None: never acknowledged)."""
        history = self.versions.get(post, [])
        current = self.orders[post]
        if version is None or version == current.version:
            return {"what": [], "removed": [], "added": []}
        index = max((i for i, v in enumerate(history) if v.version == version), default=None)
        what: list[str] = []
        removed: list[str] = []
        added: list[str] = []
        if index is None:
            what.append("the orders you acknowledged are no longer on record")
        else:
            for v in history[index + 1:]:
                what += list(v.changes) if v.changes is not None else [
                    "orders changed (details not recorded)"]
            old_lines = history[index].text.splitlines()
            for op in difflib.ndiff(old_lines, current.text.splitlines()):
                if op.startswith("- "):
                    removed.append(op[2:])
                elif op.startswith("+ "):
                    added.append(op[2:])
        return {"what": what, "removed": removed, "added": added}

    # -- views -------------------------------------------------------------------------

    def orders_json(self, post: str) -> dict[str, Any]:
        o = self.orders[post]
        version, since = self.current()[post]
        return {"post": o.post_id, "name": o.post_name, "version": version,
                "since": format_time(since), "rules": list(o.rules),
                "general": list(o.general), "free_text": o.free_text, "text": o.text}

    def officer_orders(self, officer: str) -> dict[str, Any]:
        """The orders an officer should read: their rostered posts now and next, else all."""
        now = self.view.clock()
        upcoming = [s for s in self.shifts if s.officer == officer and s.end > now
                    and s.start < now + 24 * 3600 * US_PER_S]
        posts = [s.post for s in upcoming if s.post is not None and s.post in self.orders]
        rostered = bool(posts)
        if not rostered:
            posts = list(self.orders)
        out = []
        for post in dict.fromkeys(posts):
            last = self.last_ack(officer, post)
            item = self.orders_json(post)
            item |= {
                "acknowledged": last is not None and last.version == item["version"],
                "acknowledged_version": None if last is None else last.version,
                "acknowledged_at": None if last is None else format_time(last.at),
                "changes_since_acknowledged": self.changes_since(
                    post, None if last is None else last.version),
                "shifts": [_shift_json(s) for s in upcoming if s.post == post],
            }
            out.append(item)
        return {"officer": officer, "rostered": rostered, "posts": out}

    def status(self, from_us: int, until_us: int) -> dict[str, Any]:
        """Per post and per shift: who has and has not acknowledged the current orders."""
        acked = self.acknowledged_versions()
        posts = []
        for post, (version, since) in self.current().items():
            shifts = []
            for s in self.shifts:
                if s.post != post or s.end <= from_us or s.start >= until_us:
                    continue
                last = self.last_ack(s.officer, post)
                shifts.append(_shift_json(s) | {
                    "acknowledged": version in acked.get((s.officer, post), frozenset()),
                    "acknowledged_version": None if last is None else last.version,
                    "acknowledged_at": None if last is None else format_time(last.at),
                })
            by = sorted({a.officer for a in self.acks if a.post == post and a.version == version})
            posts.append({"post": post, "name": self.orders[post].post_name, "version": version,
                          "since": format_time(since), "shifts": shifts,
                          "acknowledged_by": by})
        return {"from": format_time(from_us), "until": format_time(until_us), "posts": posts}

    # -- the background step -------------------------------------------------------------

    def subscribe(self, subscribers: Subscribers) -> None:
        """Hear of device fixes stored (site option ``duty_from_devices``)."""

        def stored(h: FixesStored) -> None:  # only sent where the site has the option
            self.view.spawn(self.duty_from_devices(h.fixes), "duty-from-devices")

        subscribers.subscribe(FixesStored, stored)

    async def duty_from_devices(self, fixes: Sequence[Mapping[str, Any]]) -> None:
        """Site option ``duty_from_devices``: a device fix inside its officer's rostered
        shift puts them on duty (source ``device-in-shift``) unless they are on duty
        already or booked off themselves during this shift; the roster end ends it.

        A shift of thousands reporting in at once: one query for all their last duty
        events, and their duty events committed together (one request per device)."""
        by_officer: dict[str, list[Shift]] = {}
        for s in self.shifts:
            by_officer.setdefault(s.officer, []).append(s)
        first: dict[str, tuple[Mapping[str, Any], Shift]] = {}  # each officer's earliest
        for fix in fixes:
            officer, t = fix["officer"], int(fix["t_us"])
            shift = next((s for s in by_officer.get(officer, ()) if s.covers(t)), None)
            if shift is None:
                continue
            seen = first.get(officer)
            if seen is None or t < int(seen[0]["t_us"]):
                first[officer] = (fix, shift)
        if not first:
            return
        last_of = await asyncio.to_thread(
            self.store.last_duty_events, {o: int(f["t_us"]) for o, (f, _) in first.items()})
        rows: dict[str | None, list[dict[str, Any]]] = {}
        for officer, (fix, shift) in first.items():
            t = int(fix["t_us"])
            last = last_of.get(officer)
            if last is not None and (last["on"] or last["t_us"] >= shift.start):
                continue  # on duty, or they (or the roster) said otherwise in this shift
            caps = sorted(valid_qualifications(officer, t, self.qualifications))
            rows.setdefault(fix.get("device"), []).append({
                "kind": "duty", "t_us": t, "officer": officer, "x": None, "y": None,
                "accuracy": None, "post": None, "flag": None, "on": True, "open": None,
                "capabilities": caps,
                "raw": {"t": format_time(t), "kind": "duty", "officer": officer, "on": True,
                        "capabilities": caps, "shift": shift.id,
                        "reason": "device reporting during the rostered shift"}})
        # Started together, so the group commit stores them in one transaction.
        await asyncio.gather(*(self.ingest(batch, source="device-in-shift", device=device)
                               for device, batch in rows.items()))

    def idle(self) -> bool:
        """Whether a step would do nothing (the upkeep then skips it): the site unchanged,
        and another node's to step, or no shift and no governed qualification to watch and
        no live unbriefed alert to resolve. An officer's time on duty is read from the
        store when a shift needs it."""
        if self.view.site() is not self._site:
            return False
        bus = self.view.bus()
        if bus is not None and not bus.owns():
            return True  # distributed: the site's owner steps it (as step() says)
        return not (self.shifts or self._governed or self.view.alerts.any_live(UNBRIEFED))

    async def step(self) -> None:
        if self.view.site() is not self._site:
            await asyncio.to_thread(self.sync_site)
        bus = self.view.bus()
        if bus is not None:  # distributed: the site's owner, on its cover, and only it
            if not bus.owns():
                return
            await bus.refresh_replica()
            if bus.replica is None:
                return
        await self.emit_due_events()
        await self.evaluate()

    async def emit_due_events(self) -> None:
        """Ingest roster duty events and expiry re-statements the watermark nears."""
        horizon = self.view.shown().horizon
        until = self.view.clock() + seconds_to_us(LOOKAHEAD_S)
        self._emitted = {k for k in self._emitted if k[2] >= horizon}
        roster: list[dict[str, Any]] = []
        for b in roster_boundaries(self.shifts, horizon, until):
            key = (b.officer, "start" if b.on else "end", b.t)
            if key in self._emitted:
                continue
            if b.on and self.view.site().duty_from_devices:
                continue  # the officer's device reporting puts them on (handlers/ingest)
            self._emitted.add(key)
            caps = sorted(valid_qualifications(b.officer, b.t, self.qualifications)) if b.on \
                else []
            roster.append(_duty_row(b.officer, b.t, b.on, caps, {"shift": b.shift_id}))
        expiring: list[dict[str, Any]] = []
        for q in qualification_expiries(self.qualifications, horizon, until):
            key = (f"{q.officer}/{q.name}", "expiry", q.valid_until)
            if q.name not in self._governed or key in self._emitted:
                continue
            last = await asyncio.to_thread(self.store.last_duty, q.officer, q.valid_until)
            if last is None or not last[0] or q.name not in last[1]:
                # Not on duty with it (yet): look again next step; an officer who comes
                # on duty later, within the look-ahead, must still lose it at expiry.
                continue
            self._emitted.add(key)
            expiring.append(_duty_row(q.officer, q.valid_until, True,
                                      sorted(last[1] - {q.name}),
                                      {"expired": q.name}))
        if roster:
            await self.ingest(roster, source=ROSTER_SOURCE)
        if expiring:
            await self.ingest(expiring, source=QUALIFICATION_SOURCE)

    async def evaluate(self) -> None:
        """Raise "unbriefed" alerts now due; resolve those whose officer is briefed or gone."""
        shown = self.view.shown()
        t = shown.horizon
        on_duty = shown.on_duty()
        for officer in list(self._on_since):
            if officer not in on_duty:
                del self._on_since[officer]
        new = sorted(on_duty - set(self._on_since))
        if new:  # a shift of thousands coming on at once: one query, not one per officer
            since = await asyncio.to_thread(self.store.duty_since_many, new, t)
            for officer in new:
                self._on_since[officer] = since.get(officer, t)
        due = unbriefed(t, self.shifts, self._on_since, self.current(),
                        self.acknowledged_versions(), seconds_to_us(self.reacknowledge_s))
        await self.view.execute(KeepAlerts(
            "briefing", UNBRIEFED,
            tuple(WantedAlert(u.post, unbriefed_rule(u.officer), u.since, max(u.alert_at, u.since))
                  for u in due), resolve_unwanted_at=t))


def _duty_row(officer: str, t: int, on: bool, caps: Sequence[str],
              raw: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "duty", "t_us": t, "officer": officer, "x": None, "y": None,
            "accuracy": None, "post": None, "flag": None, "on": on, "open": None,
            "capabilities": list(caps), "raw": {"t": format_time(t), "kind": "duty",
                                                "officer": officer, "on": on,
                                                "capabilities": list(caps), **raw}}


def _shift_json(s: Shift) -> dict[str, Any]:
    return {"id": s.id, "officer": s.officer, "post": s.post, "patrol": s.patrol,
            "start": format_time(s.start), "end": format_time(s.end)}
