"""The live engine: the cover engine driven by a watermark instead of a file.

Events are held until the watermark (wall clock minus the allowed lateness)
passes them, then evaluated by the same :class:`~coverwatch.engine.CoverEngine`
a replay uses, fed in small chunks. Because the engine is chunk-invariant, the
lapses are identical to ``coverwatch replay`` over the same events.

An event earlier than the horizon (the point up to which the state is final)
is *late*: the server stores and flags it, and reports recompute lapses with
it, but the live engine cannot take it at its own time without rewriting
history. A late state event (duty, gate, flag) that is newer than everything
received about the same officer, gate or flag is instead *applied late*: it
takes effect at the horizon when it arrives (:meth:`LiveCover.plan_late`), so
the watch never loses it; a late fix is not applied (an old position is not a
current one). docs/semantics.md, "Late state events", is the contract.

This module is an adapter only in that the caller passes wall-clock time in;
it does no I/O itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from coverwatch.domain.events import (
    EventBatch,
    FixColumns,
    OfficerRegistry,
)
from coverwatch.domain.site import Site
from coverwatch.domain.storedrows import batch_from_rows
from coverwatch.domain.time import format_time, seconds_to_us
from coverwatch.engine import CoverChange, CoverEngine, Lapse, RuleState, RuleStats
from coverwatch.server.latewatch import STATE_KINDS, LateArrival, LateArrivals, subject_of

__all__ = ["LiveCover", "OfficerView", "Position"]

_FIX_FIELDS = itemgetter("t_us", "officer", "x", "y", "accuracy")


def _scan(row: Mapping[str, Any]) -> bool:
    """A fix made from a checkpoint scan, as batch_from_rows reads it (``raw``, or the
    raw text ``scan_raw`` the store gives for scans only)."""
    raw = row.get("raw")
    if raw is None and row.get("scan_raw"):
        raw = json.loads(row["scan_raw"])
    return isinstance(raw, dict) and raw.get("kind") == "scan"


@dataclass(frozen=True, slots=True)
class Position:
    """An officer's latest received fix (site metres), for the plan."""

    t_us: int
    x: float
    y: float
    accuracy_m: float


@dataclass(frozen=True, slots=True)
class OfficerView:
    """What the control room sees of one officer at the horizon."""

    officer: str
    on_duty: bool
    capabilities: tuple[str, ...]
    last_fix_us: int | None
    stale: bool
    rules: tuple[tuple[str, str], ...]
    # Rules they are placed for but lack the capability of.
    unqualified: tuple[tuple[str, str], ...] = ()



def _any_key(rows: Sequence[Mapping[str, Any]], name: str) -> bool:
    """Whether any row has ``name``."""
    try:
        return any(map(dict.__contains__, rows, repeat(name)))
    except TypeError:  # rows that are mappings but not dicts
        return any(name in r for r in rows)

class LiveCover:
    """Watermark-driven cover evaluation; see the module docstring.

    ``horizon`` starts at ``start_horizon`` (e.g. the server's start time minus
    the lateness, or the horizon saved before a restart): nothing earlier is
    accepted live. The engine's window starts at the first on-time event, as a
    replay's does.
    """

    def __init__(self, site: Site, *, lateness_us: int, start_horizon: int,
                 timeline: bool = False) -> None:
        self.site = site
        self.lateness_us = lateness_us
        self.registry = OfficerRegistry()
        self._horizon = start_horizon
        self._timeline = timeline
        self._engine: CoverEngine | None = None
        self._buffer: list[EventBatch] = []
        # Latest received (t, seq, value) per officer / gate / flag, for the plan; an
        # officer's as (t, seq, x, y, accuracy), made a Position when asked for.
        self._positions: dict[str, tuple[int, int, float, float, float]] = {}
        self._gates: dict[str, tuple[int, int, bool]] = {g: (0, 0, False) for g in site.gates}
        self._flags: dict[str, tuple[int, int, bool]] = {
            f: (0, 0, on) for f, on in site.flags.items()
        }
        # The latest event time received per (kind, officer / post / flag), late or not.
        self._state_t: dict[tuple[str, str], int] = {}
        self.late = LateArrivals()
        # The newest stored event id added: a restart from a checkpoint of this state
        # adds the stored events after it (server/livecheckpoint.py).
        self.max_id = 0

    def __getstate__(self) -> dict[str, Any]:
        # A checkpoint holds (t, seq, Position), as before positions were kept as values:
        # a node of the previous release resumes it (a rolling upgrade).
        state = dict(self.__dict__)
        state["_positions"] = {name: (t, seq, Position(t, x, y, acc))
                               for name, (t, seq, x, y, acc) in self._positions.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A checkpoint written before late state events were applied lacks these.
        self.__dict__.update(state)
        self.__dict__.setdefault("_state_t", {})
        self.__dict__.setdefault("late", LateArrivals())
        self.__dict__.setdefault("max_id", 0)
        self._positions = {  # a checkpoint's (t, seq, Position) of before issue 25's round 7
            name: (v[0], v[1], v[2].x, v[2].y, v[2].accuracy_m) if len(v) == 3 else v
            for name, v in self._positions.items()}

    @classmethod
    def from_engine(cls, site: Site, engine: CoverEngine, registry: OfficerRegistry) -> LiveCover:
        """Views over an engine already run to its horizon (a replay from a checkpoint)."""
        from coverwatch.engine import engine_conditions, engine_positions

        live = cls(site, lateness_us=0, start_horizon=engine.horizon)
        live.registry = registry
        live._engine = engine
        names = registry.names
        for idx, (t, x, y, acc) in engine_positions(engine).items():
            if idx < len(names):
                live._positions[names[idx]] = (t, 0, x, y, acc)
        gates, flags = engine_conditions(engine)
        live._gates.update({g: (0, 0, v) for g, v in gates.items()})
        live._flags.update({f: (0, 0, v) for f, v in flags.items()})
        return live

    @property
    def horizon(self) -> int:
        """Event time before which the live state is final."""
        return self._engine.horizon if self._engine is not None else self._horizon

    @property
    def started(self) -> bool:
        return self._engine is not None

    def is_late(self, t_us: int) -> bool:
        """Whether an event at ``t_us`` arrives too late for live evaluation."""
        return t_us < self.horizon

    def plan_late(self, rows: Iterable[dict[str, Any]]) -> None:
        """Decide which late rows (``late`` set), about to be stored in this order, are
        applied live: a state event at or after the latest event time received about
        the same officer, gate or flag (a tie arrives later, so it is the newer). Sets
        ``applied_us`` to the horizon on those and to None on every other row."""
        latest = dict(self._state_t)
        h = self.horizon
        for r in rows:
            r["applied_us"] = None
            if r["kind"] not in STATE_KINDS:
                continue
            subject, t = subject_of(r), int(r["t_us"])
            newest = t >= latest.get(subject, t)
            latest[subject] = max(t, latest.get(subject, t))
            if r.get("late") and newest:
                r["applied_us"] = h

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue stored rows for evaluation: on-time ones at their time, late state
        events with ``applied_us`` at that time (see :meth:`plan_late`); other late
        rows are only counted (:attr:`late`)."""
        feed: list[Mapping[str, Any]] = []
        top = self.max_id
        for r in rows:
            top = max(top, int(r["id"]))
            if r["kind"] in STATE_KINDS:
                subject, t = subject_of(r), int(r["t_us"])
                self._state_t[subject] = max(t, self._state_t.get(subject, t))
            if not r.get("late"):
                feed.append(r)
                continue
            self.late.note(LateArrival.from_row(r, int(r.get("received_us") or self.horizon)))
            applied = r.get("applied_us")
            if applied is not None:
                self._note_latest([r])  # under its own time: the newest about its subject
                feed.append({**r, "t_us": int(applied)})
        self.max_id = top
        self._note_latest([r for r in feed if not r.get("late")])
        batch = batch_from_rows(feed, self.registry, scan_growth=self.site.scan_walk_mps)
        if not len(batch):
            return
        if self._engine is None:
            self._buffer.append(batch)
        else:
            self._engine.feed(batch)

    def add_fixes(self, fixes: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        """:meth:`add` for fixes none of which is late, as (id, row without its id): the
        engine's columns made column by column, no row copied, and each officer's
        position built from their newest fix only (a distributed owner's messages)."""
        if not fixes:
            return
        rows = [r for _, r in fixes]
        ts, names, xs, ys, accs = zip(*map(_FIX_FIELDS, rows), strict=True)
        # Only a fix that keeps its raw record can be a scan's.
        scans = [i for i, r in enumerate(rows) if ("raw" in r or "scan_raw" in r) and _scan(r)]
        self.add_fix_columns(ts, names, xs, ys, accs, [s for s, _ in fixes], scans)

    def add_fix_rows(self, ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`add_fixes` given the ids and the rows (without the id) apart (a bus
        message's columns: server/buscover.py)."""
        if not rows:
            return
        ts, names, xs, ys, accs = zip(*map(_FIX_FIELDS, rows), strict=True)
        scans: list[int] = []
        # Only a fix that keeps its raw record can be a scan's (most keep none).
        if _any_key(rows, "raw") or _any_key(rows, "scan_raw"):
            scans = [i for i, r in enumerate(rows)
                     if ("raw" in r or "scan_raw" in r) and _scan(r)]
        self.add_fix_columns(ts, names, xs, ys, accs, ids, scans)

    def add_fix_columns(self, ts: Sequence[int], names: Sequence[str], xs: Sequence[float],
                        ys: Sequence[float], accs: Sequence[float | None], ids: Sequence[int],
                        scans: Sequence[int] = ()) -> None:
        """:meth:`add_fixes` of fixes given as columns (a stored batch of plain fixes:
        :class:`~coverwatch.domain.fixbatch.FixBatch`); ``scans``: the indexes of fixes
        made from checkpoint scans."""
        n = len(ts)
        if not n:
            return
        # Interned in the order of first appearance, as batch_from_rows does.
        intern = self.registry.intern
        index = {name: intern(name) for name in dict.fromkeys(names)}
        t = np.array(ts, np.int64)
        officer = np.fromiter(map(index.__getitem__, names), np.int32, n)
        seq = np.array(ids, np.int64)
        acc = np.array([0.0 if a is None else a for a in accs], np.float64) \
            if None in accs else np.array(accs, np.float64)
        x, y = np.array(xs, np.float64), np.array(ys, np.float64)
        growth = np.zeros(n, np.float64)
        growth[list(scans)] = self.site.scan_walk_mps
        self.max_id = max(self.max_id, int(seq.max()))
        # Each officer's last fix of the greatest (t, id): what _note_latest keeps.
        order = np.lexsort((np.arange(n), seq, t, officer))
        sorted_officer = officer[order]
        last = order[np.append(sorted_officer[1:] != sorted_officer[:-1], True)]
        positions = self._positions
        get = positions.get
        # (t, seq) first: one event's entry equals itself, so >= is the (t, seq) order.
        for name, entry in zip(map(names.__getitem__, last.tolist()),
                               zip(t[last].tolist(), seq[last].tolist(), x[last].tolist(),
                                   y[last].tolist(), acc[last].tolist(), strict=True),
                               strict=True):
            old = get(name)
            if old is None or entry >= old:
                positions[name] = entry
        batch = EventBatch(FixColumns(t, officer, x, y, acc, seq, growth), [])
        if self._engine is None:
            self._buffer.append(batch)
        else:
            self._engine.feed(batch)

    def advance(self, now_us: int) -> list[CoverChange]:
        """Advance the watermark to ``now_us - lateness``; returns the cover changes."""
        return self.advance_to(now_us - self.lateness_us)

    def advance_to(self, horizon: int) -> list[CoverChange]:
        """Advance the horizon to an explicit event time (restart recovery, tests)."""
        if self._engine is None:
            starts = [b.time_bounds() for b in self._buffer]
            first = min((s[0] for s in starts if s is not None), default=None)
            if first is None or first >= horizon:
                self._horizon = max(self._horizon, horizon) if first is None else self._horizon
                return []
            self._engine = CoverEngine(self.site, first, timeline=self._timeline)
            for b in self._buffer:
                self._engine.feed(b)
            self._buffer = []
        if horizon <= self._engine.horizon:
            return []
        return self._engine.advance(horizon)

    def switch_site(self, site: Site) -> list[CoverChange]:
        """Put new rules in force from the horizon on (see CoverEngine.switch_site)."""
        self.site = site
        for g in site.gates:
            self._gates.setdefault(g, (0, 0, False))
        for f, on in site.flags.items():
            self._flags.setdefault(f, (0, 0, on))
        if self._engine is None:
            return []
        return self._engine.switch_site(site)

    def _note_latest(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for r in rows:
            key = (int(r["t_us"]), int(r["id"]))
            kind = r["kind"]
            if kind == "fix":
                name = r["officer"]
                old = self._positions.get(name)
                if old is None or key >= old[:2]:
                    self._positions[name] = (*key, float(r["x"]), float(r["y"]),
                                             float(r["accuracy"] or 0.0))
            elif kind in ("gate", "flag"):
                table, name = (self._gates, r["post"]) if kind == "gate" \
                    else (self._flags, r["flag"])
                old_c = table.get(name)
                if old_c is None or key >= old_c[:2]:
                    table[name] = (*key, bool(r["open" if kind == "gate" else "on"]))

    # -- views ------------------------------------------------------------

    def positions(self) -> dict[str, Position]:
        """Each officer's latest received fix (may be up to the lateness past the horizon)."""
        return {name: Position(t, x, y, acc) for name, (t, _, x, y, acc)
                in self._positions.items()}

    def gates(self) -> dict[str, bool]:
        """Whether each gate is open, by its latest received gate event."""
        return {name: v[2] for name, v in self._gates.items()}

    def flags(self) -> dict[str, bool]:
        """Each site flag's value, by its latest received flag event."""
        return {name: v[2] for name, v in self._flags.items()}

    def timelines(self) -> list[RuleStats]:
        """Per-rule statistics, with timeline points if built with ``timeline=True``."""
        if self._engine is None:
            return CoverEngine(self.site, self._horizon).stats
        return self._engine.stats

    def rule_states(self) -> list[RuleState]:
        if self._engine is None:
            return CoverEngine(self.site, self._horizon).rule_states()
        return self._engine.rule_states()

    def cover_states(self) -> list[dict[str, Any]]:
        """Each rule at the horizon: "inactive", "covered", "grace" (short, not yet
        alerted) or "lapsed", with the count, the need and when cover went short."""
        grace = {(p.id, r.id): seconds_to_us(r.grace_s) for p, r in self.site.rules()}
        horizon = self.horizon
        out = []
        for st in self.rule_states():
            if not st.active:
                state = "inactive"
            elif st.lapse_start is None:
                state = "covered"
            elif horizon - st.lapse_start <= grace[(st.post, st.rule)] and not st.alerted:
                state = "grace"
            else:
                state = "lapsed"
            start = st.lapse_start
            out.append({
                "post": st.post, "rule": st.rule, "state": state, "count": st.count,
                "need": st.need,
                "lapse_start": None if start is None else format_time(start),
                "lapse_start_ms": None if start is None else start // 1000,
            })
        return out

    def lapses(self, *, include_open: bool = True) -> list[Lapse]:
        """Closed lapses so far, plus (optionally) those still open at the horizon."""
        if self._engine is None:
            return []
        out = list(self._engine.lapses)
        if include_open:
            grace = {(p.id, r.id): r.grace_s for p, r in self.site.rules()}
            for st in self._engine.rule_states():
                if st.lapse_start is not None:
                    g = round(grace[(st.post, st.rule)] * 1_000_000)
                    out.append(Lapse(st.post, st.rule, st.lapse_start, None,
                                     st.lapse_start + g if st.alerted else None, st.lapse_min))
        out.sort(key=lambda lp: (lp.start, lp.post, lp.rule))
        return out

    def on_duty(self) -> set[str]:
        """The officers on duty at the horizon: :meth:`officers`' ``on_duty`` alone, for
        the checks that run every step (a view per officer five times a second cost
        phones' uploads a tenth of the event loop, issue 25)."""
        if self._engine is None:
            return set()
        duty = self._engine.officer_duty
        return {name for idx, name in enumerate(self.registry.names) if duty(idx)[0]}

    def officers(self) -> list[OfficerView]:
        """Every officer seen so far, with duty, last fix age and the rules they are in."""
        out = []
        stale_us = round(self.site.stale_after_s * 1_000_000)
        need_cap = {(p.id, r.id): r.capability for p, r in self.site.rules()}  # once for all
        for idx, name in enumerate(self.registry.names):
            if self._engine is None:
                out.append(OfficerView(name, False, (), None, True, ()))
                continue
            on, caps = self._engine.officer_duty(idx)
            last = self._engine.officer_last_fix(idx)
            stale = last is None or last + stale_us <= self._engine.horizon
            placed = () if stale or not on else tuple(self._engine.officer_rules(idx))
            rules = tuple(pr for pr in placed if need_cap[pr] is None or need_cap[pr] in caps)
            unqualified = tuple(pr for pr in placed if pr not in rules)
            out.append(OfficerView(name, on, tuple(sorted(caps)), last, stale, rules,
                                   unqualified))
        return out

    def stale_officers(self) -> int:
        """Officers on duty whose device has gone silent."""
        return sum(1 for o in self.officers() if o.on_duty and o.stale)
