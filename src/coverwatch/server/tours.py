"""Tours on the live server: collects scans from the stored events, raises and
resolves ``tour`` alerts as rounds fall due, and answers tour progress.

A scan is stored as a fix whose raw record says ``kind: scan`` (with its
``checkpoint``); this watch reads newly stored events in id order, keeps the
scans of the last two days (saved in the store's state), and evaluates every
round that was running when the server started or began since (after a
restart, of at most the last day) at the
shown cover's horizon, so tours follow event time as cover does. Rounds that
began before the site's tours were first watched (saved in the store) are not
judged: a new site does not open with alerts for rounds nobody was asked to
walk. Alerts are raised and resolved by command (``KeepAlerts``, carried out
by :mod:`coverwatch.server.handlers.alerts`), like the briefing's; the watch sees
its site through a :class:`~coverwatch.server.ports.SiteView`, never the unit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.domain.tours import (
    TOUR_ALERT_KIND,
    RoundStatus,
    Scan,
    round_alerts,
    round_status,
    round_windows,
)
from coverwatch.server.commands import KeepAlerts, WantedAlert

if TYPE_CHECKING:
    from coverwatch.server.ports import SiteView
    from coverwatch.storage import Store

__all__ = ["TourWatch", "progress_json"]

log = logging.getLogger("coverwatch.tours")
_DAY_US = 86_400 * US_PER_S
_WATCHED_KEY = "tours.watched_from_us"
_SCANS_KEY = "tours.scans"


class TourWatch:
    """One site's tours: scans seen, rounds evaluated, alerts raised."""

    def __init__(self, view: SiteView, store: Store, step_s: float = 2.0) -> None:
        self.view = view
        self.store = store
        self.step_s = step_s
        self.scans: list[Scan] = []
        self._after_id = 0
        self._since: int | None = None  # rounds ending after this are evaluated
        self.watched_from: int | None = None  # rounds starting before are not judged
        self._loaded = False
        self._steps = 0
        self._lock = asyncio.Lock()  # one step at a time (the task, or a test by hand)

    def idle(self) -> bool:
        """Whether a step would do nothing (the upkeep then skips it): a site without tours."""
        return not self.view.site().tours

    async def step(self) -> None:
        async with self._lock:
            await self._step()

    async def _step(self) -> None:
        site = self.view.site()
        if not site.tours:
            return
        bus = self.view.bus()
        if bus is not None and not bus.owns():  # distributed: the site's owner only
            return
        await asyncio.to_thread(self.read_scans)
        t = self.view.shown().horizon
        if t is None or t <= 0:
            return
        if self.watched_from is None:
            saved = await asyncio.to_thread(self.store.get_state, _WATCHED_KEY)
            if saved is None:
                saved = str(t)
                await asyncio.to_thread(self.store.set_state, _WATCHED_KEY, saved)
            self.watched_from = int(saved)
        if self._since is None:  # after a restart, catch up on at most the last day
            self._since = max(self.watched_from, t - _DAY_US)
        await self.evaluate(t)

    def read_scans(self) -> None:
        """New stored scans. The scans of the last two days and how far the events
        were read are saved in the store (a few rows a round, not the fixes), so a
        restart reads only the events stored since."""
        store = self.store
        if not self._loaded:
            saved = store.get_state(_SCANS_KEY)
            if saved is None:  # first watch: earlier rounds are not judged
                self._after_id = store.max_event_id()
            else:
                state = orjson.loads(saved)
                self._after_id = int(state["after_id"])
                self.scans = [Scan(int(t), str(o), str(c)) for t, o, c in state["scans"]]
            self._loaded = True
        found = False
        before = self._after_id
        while True:
            rows = store.events_since(self._after_id, limit=10_000)
            if not rows:
                break
            self._after_id = int(rows[-1]["id"])
            found = self._take(rows) or found
        self._steps += 1
        if found or (self._after_id != before and self._steps % 30 == 0):
            if self.scans:
                newest = max(s.t for s in self.scans)
                self.scans = [s for s in self.scans if s.t > newest - 2 * _DAY_US]
            store.set_state(_SCANS_KEY, orjson.dumps({
                "after_id": self._after_id,
                "scans": [[s.t, s.officer, s.checkpoint] for s in self.scans]}).decode())

    def _take(self, rows: list[dict[str, Any]]) -> bool:
        found = False
        for r in rows:
            raw = r.get("raw")
            if r.get("kind") != "fix" or not isinstance(raw, dict) or raw.get("kind") != "scan":
                continue
            checkpoint, officer = raw.get("checkpoint"), r.get("officer")
            if isinstance(checkpoint, str) and isinstance(officer, str):
                self.scans.append(Scan(int(r["t_us"]), officer, checkpoint))
                found = True
        return found

    def rounds(self, t: int, since: int | None = None) -> list[RoundStatus]:
        """Every round running at ``t`` or ending after ``since``, as of ``t``."""
        site = self.view.site()
        lo = t if since is None else min(since, t)
        return [round_status(tour, start, end, self.scans, t)
                for tour in site.tours
                for start, end in round_windows(tour, site.timezone, lo, t + 1)]

    async def evaluate(self, t: int) -> None:
        """Raise the alerts of late or missed stops; resolve them on the late scan
        or at the round's end."""
        checkpoints = {c.id: c for c in self.view.site().checkpoints}
        since = self.watched_from if self.watched_from is not None else t
        wanted = [a for st in self.rounds(t, self._since) if st.start >= since
                  for a in round_alerts(st, checkpoints)]
        self._since = t  # rounds that end from now on are evaluated again
        await self.view.execute(KeepAlerts("tours", TOUR_ALERT_KIND, tuple(
            WantedAlert(want.post, want.rule, want.due, want.due, want.details,
                        want.resolved_at) for want in wanted)))


def progress_json(rounds: list[RoundStatus], watched_from: int | None = None,
                  ) -> list[dict[str, Any]]:
    """Rounds for the API: per stop its due time, scan, late and missed; the next stop.
    A round that began before ``watched_from`` is not judged: nothing of it is missed
    (/duty listed every stop of the demo's first round as missed, with no alert)."""
    out = []
    for st in rounds:
        nxt = st.next_stop if st.at < st.end else None  # an ended round has no next stop
        judged = watched_from is None or st.start >= watched_from
        out.append({
            "tour": st.tour,
            "start": format_time(st.start),
            "end": format_time(st.end),
            "over": st.at >= st.end,
            "officers": list(st.officers),
            "next": None if nxt is None else {
                "checkpoint": nxt.checkpoint,
                "due_by": None if nxt.due_by is None else format_time(nxt.due_by)},
            "judged": judged,
            "missed": [s.checkpoint for s in st.stops if s.missed and judged],
            "stops": [{
                "checkpoint": s.checkpoint,
                "due_by": None if s.due_by is None else format_time(s.due_by),
                "scanned_at": None if s.scanned_at is None else format_time(s.scanned_at),
                "officer": s.officer,
                "late": s.late,
                "missed": s.missed and judged,
            } for s in st.stops],
        })
    return out
