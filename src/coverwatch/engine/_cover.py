"""The cover engine: exact, event-time evaluation of every cover rule.

The engine is fed events in chunks and told how far event time has advanced
(the *horizon*). Everything before the horizon is final; events at or after it
may still arrive. Each call to :meth:`CoverEngine.advance` evaluates the window
``[old horizon, new horizon)`` with numpy, carrying just enough state across
windows (each officer's last fix and memberships, duty, flags, gates and any
open lapse) that the result does not depend on how the input was chunked.

How a window is evaluated (see docs/semantics.md for the contract):

1. Fixes are grouped by officer; each fix is linked to the officer's previous
   fix unless that one was stale by then.
2. A grid gives candidate (fix, rule) pairs within the rule's ``release_m``;
   ``d <= within_m`` decides "in", otherwise the pair keeps the membership of
   the linked previous pair (hysteresis), forward-filled along each chain.
3. Runs of consecutive "in" fixes become contribution intervals
   ``[first fix, min(next fix, last fix + stale))``, filtered by duty and
   capability.
4. Per rule, interval ends become +1/-1 steps; a cumulative sum gives the count
   after all events at each instant, which with the rule's activity gives the
   lapses.

Steps 1-3 are in engine/_members.py, step 4 in engine/_windows.py (mixins of
:class:`CoverEngine`); per-rule statistics are summed in numpy per window and
folded into the :class:`RuleStats` objects when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, compress
from operator import attrgetter
from typing import Any

import numpy as np

from coverwatch.domain.events import (
    DutyEvent,
    EventBatch,
    FixColumns,
    FlagEvent,
    GateEvent,
)
from coverwatch.domain.site import Site
from coverwatch.domain.time import seconds_to_us
from coverwatch.engine._index import RuleGrid
from coverwatch.engine._members import NEVER as _NEVER
from coverwatch.engine._native import KERNEL
from coverwatch.engine._windows import WindowMixin
from coverwatch.engine.results import CoverChange, Lapse, RuleStats
from coverwatch.errors import OutOfOrderError
from coverwatch.planning.network import ReachField, build_network

__all__ = ["CoverEngine", "RuleState"]

ControlEvent = DutyEvent | GateEvent | FlagEvent
_T = attrgetter("t")
_WITHIN, _RELEASE, _NEED = attrgetter("within_m"), attrgetter("release_m"), attrgetter("need")
_CAPABILITY = attrgetter("capability")
_SEQ = attrgetter("seq")


@dataclass(frozen=True, slots=True)
class RuleState:
    """The state of one rule at the horizon, for live views."""

    post: str
    rule: str
    active: bool
    count: int
    need: int
    lapse_start: int | None
    lapse_min: int
    alerted: bool


class CoverEngine(WindowMixin):
    """Evaluates a site's cover rules over a stream of events; see the module docstring."""

    def __init__(
        self, site: Site, start: int, *, timeline: bool = False, compiled: bool = True,
        changes: bool = True,
    ) -> None:
        """``compiled=False`` keeps to numpy's membership pass (the reference);
        ``changes=False`` makes :meth:`advance` return no live changes (a replay reads
        the lapses and statistics only)."""
        self.site = site
        self._compiled = compiled
        self._report_changes = changes
        self._stale = seconds_to_us(site.stale_after_s)
        self._record_timeline = timeline
        self._h = start
        self._closed = False

        pairs = site.rules()
        self._pairs, n = pairs, len(pairs)
        self._n_rules = n
        rules = [r for _, r in pairs]
        self._within = np.array(list(map(_WITHIN, rules)), np.float64)
        self._release = np.array(list(map(_RELEASE, rules)), np.float64)
        self._need = np.array(list(map(_NEED, rules)), np.int64)
        # Few distinct grace periods: each converted once.
        grace_us = {g: seconds_to_us(g) for g in {r.grace_s for r in rules}}
        self._grace = [grace_us[r.grace_s] for r in rules]
        rule_caps = list(map(_CAPABILITY, rules))
        caps = sorted({c for c in rule_caps if c is not None})
        self._cap_col = {c: i + 1 for i, c in enumerate(caps)}  # column 0 means "any"
        self._rule_cap = np.array([self._cap_col.get(c, 0) for c in rule_caps], np.int64)
        xy = np.fromiter(chain.from_iterable((np.nan, np.nan) if p.at is None else p.at
                                             for p, _ in pairs), np.float64, 2 * n).reshape(n, 2)
        self._px, self._py = xy[:, 0].copy(), xy[:, 1].copy()
        self._area_rules = [i for i, (p, _) in enumerate(pairs) if p.area is not None]
        self._grid = RuleGrid(site)
        # Reach rules: travel time along walkways from precomputed distance fields.
        self._reach: ReachField | None = None
        reach_rules = [(p, r) for p, r in pairs if r.reach_s is not None]
        if reach_rules:
            targets = sorted({p.id for p, _ in reach_rules})
            radius = max((r.reach_s or 0.0) * site.speed_for(r.capability)
                          for _, r in reach_rules)
            self._reach = ReachField(build_network(site), targets, radius * (1 + 1e-9) + 1.0)
        self._rule_target = np.array(
            [-1 if r.reach_s is None or self._reach is None else self._reach.index[p.id]
             for p, r in pairs], np.int64)
        self._reach_s = np.array(
            [np.inf if r.reach_s is None else r.reach_s for _, r in pairs], np.float64)
        speeds = {c: site.speed_for(c) for c in {None, *caps}}
        self._speed = np.array(list(map(speeds.__getitem__, rule_caps)), np.float64)
        # Travel is never shorter than the straight line to the post, so a pair with
        # d beyond this (as in RuleGrid: a metre spare for rounding) is out of reach.
        self._reach_radius = self._reach_s * self._speed * (1 + 1e-9) + 1.0

        self._kernel_setup()

        # Which rules each condition drives: activity is recomputed only for those.
        self._flags: dict[str, bool] = dict(site.flags)
        self._gates: dict[str, bool] = {g: False for g in site.gates}
        self._rules_by_flag: dict[str, list[int]] = {}
        self._rules_by_gate: dict[str, list[int]] = {}
        for i, (post, rule) in enumerate(pairs):
            if rule.when is not None:
                self._rules_by_flag.setdefault(rule.when, []).append(i)
            if rule.when_gate_open:
                self._rules_by_gate.setdefault(post.id, []).append(i)
        # Only the rules a condition drives can be inactive.
        self._active = np.ones(n, bool)
        for i in sorted({i for rs in (*self._rules_by_flag.values(),
                                      *self._rules_by_gate.values()) for i in rs}):
            self._active[i] = self._rule_active(i)

        # Per-officer state, grown on demand.
        self._n_off = 0
        self._last_t = np.empty(0, np.int64)
        self._last_xya = np.empty((0, 3), np.float64)  # x, y, accuracy of the last fix
        self._last_g = np.empty(0, np.float64)  # how fast that accuracy grows (m/s)
        self._on = np.empty(0, bool)
        self._caps = np.empty((0, len(caps) + 1), bool)
        self._capsets: list[frozenset[str]] = []
        # Memberships ("in") at each officer's last fix, as sorted keys officer * n + rule.
        self._carry = np.empty(0, np.int64)
        # When each carried membership ends as a scan's accuracy grows (INF: never).
        self._carry_end = np.empty(0, np.int64)

        # Per-rule lapse state.
        self._deficit = np.zeros(n, bool)
        self._lapse_start: list[int | None] = [None] * n
        self._lapse_min = np.zeros(n, np.int64)
        self._lapse_alerted = [False] * n
        self._count_at_h = np.zeros(n, np.int64)

        self.lapses: list[Lapse] = []
        self._stats = [RuleStats(p.id, r.id, r.need) for p, r in pairs]
        # Active and covered time per rule, added up per window in numpy and folded
        # into the RuleStats objects only when they are read (see `stats`).
        self._active_us = np.zeros(n, np.int64)
        self._covered_us = np.zeros(n, np.int64)
        self.retired_stats: list[RuleStats] = []  # rules removed by switch_site
        self._pending_fixes: list[FixColumns] = []
        self._pending_control: list[ControlEvent] = []

    def _kernel_setup(self) -> None:
        # The compiled membership pass (if built here) for point rules without reach;
        # numpy's otherwise, and always with compiled=False (the reference, for the tests).
        self._layout = self._grid.layout()
        simple = self._n_rules > 0 and not self._area_rules and self._reach is None
        self._use_kernel = (KERNEL is not None and self._compiled and simple
                            and self._layout is not None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickled by another build or version (a live checkpoint): decide afresh here.
        self.__dict__.update(state)
        self.__dict__.setdefault("_compiled", True)
        self.__dict__.setdefault("_report_changes", True)
        self._kernel_setup()

    # -- public API -------------------------------------------------------

    @property
    def horizon(self) -> int:
        """Event time up to which (exclusive) the state is final."""
        return self._h

    @property
    def oldest_open_lapse(self) -> int | None:
        """Start of the earliest lapse still open at the horizon, or None.

        Every lapse not yet in :attr:`lapses` starts at or after
        ``min(horizon, oldest_open_lapse)``: a replay can write out the closed
        lapses before that in order without keeping them.
        """
        return min((s for s in self._lapse_start if s is not None), default=None)

    @property
    def stats(self) -> list[RuleStats]:
        """Per-rule statistics so far (one per rule in force, in the site's order)."""
        self._fold_stats()
        return self._stats

    @stats.setter
    def stats(self, value: list[RuleStats]) -> None:
        self._stats = value
        self._active_us[:] = 0
        self._covered_us[:] = 0

    def _fold_stats(self) -> None:
        rs = np.flatnonzero(self._active_us | self._covered_us)
        stats = self._stats
        # Plain ints in one go: a numpy scalar read per rule costs more than the sum.
        for r, a, c in zip(rs.tolist(), self._active_us[rs].tolist(),
                           self._covered_us[rs].tolist(), strict=True):
            st = stats[r]
            st.active_us += a
            st.covered_us += c
        self._active_us[:] = 0
        self._covered_us[:] = 0

    def feed(self, batch: EventBatch) -> None:
        """Queue events. Each must have ``t >= horizon``; otherwise it is too late."""
        if self._closed:
            raise OutOfOrderError("the engine is closed")
        fixes = batch.fixes
        if len(fixes):
            lo = int(fixes.t.min())
            if lo < self._h:
                bad = int(fixes.seq[np.argmin(fixes.t)])
                raise OutOfOrderError(
                    f"fix (seq {bad}) at t={lo} is before the engine horizon {self._h}"
                )
            self._pending_fixes.append(fixes)
        control = batch.control
        if control and min(map(_T, control)) < self._h:
            ev = next(ev for ev in control if ev.t < self._h)
            raise OutOfOrderError(
                f"event (seq {ev.seq}) at t={ev.t} is before the engine horizon {self._h}"
            )
        self._pending_control.extend(control)

    def advance(self, horizon: int) -> list[CoverChange]:
        """Make the state final for every ``t < horizon``; returns the live changes.

        The caller promises that every event with ``t < horizon`` has been fed.
        """
        return self._advance(horizon, stats_end=horizon)

    def close(self, end: int) -> list[CoverChange]:
        """End the window at ``end`` (inclusive): events at ``end`` still count.

        Lapses still open at ``end`` are reported with ``end=None``. Events after
        ``end`` are discarded.
        """
        if end + 1 < self._h:
            raise OutOfOrderError(f"window end {end} is before the horizon {self._h}")
        # Usually every pending fix is at or before the end: kept as it is, not copied.
        self._pending_fixes = [f if int(f.t.max()) <= end else f.take(f.t <= end)
                               for f in self._pending_fixes if len(f)]
        self._pending_control = [e for e in self._pending_control if e.t <= end]
        changes = self._advance(end + 1, stats_end=end)
        self._fold_stats()
        for i, start in enumerate(self._lapse_start):
            if start is not None:
                post, rule = self._pairs[i]
                alert_at = start + self._grace[i] if self._lapse_alerted[i] else None
                self.lapses.append(
                    Lapse(post.id, rule.id, start, None, alert_at, int(self._lapse_min[i]))
                )
                st = self._stats[i]
                st.longest_lapse_us = max(st.longest_lapse_us, end - start)
        self.lapses.sort(key=attrgetter("start", "post", "rule"))
        self._closed = True
        return changes

    def switch_site(self, site: Site) -> list[CoverChange]:
        """Put a new version of the site's rules in force from the horizon on.

        Rules are matched by (post id, rule id). At the switch instant h:

        * each officer's membership is decided afresh from their latest fix
          (if still fresh under the new ``stale_after_s``) by the new rules; in
          the hysteresis band an officer stays in only a rule that existed before
          and that they were in;
        * a lapse of a rule that is kept goes on if the rule is still short at h
          (one lapse, alerted once); otherwise it ends at h;
        * lapses of removed rules end at h;
        * flags and gates keep their states; new flags start from the site file.

        Returns the changes this causes at h (lapses of removed rules ending).
        Lapses are therefore evaluated under the rules in force at each moment.
        """
        if self._closed:
            raise OutOfOrderError("the engine is closed")
        h = self._h
        self._fold_stats()
        new = CoverEngine(site, h, timeline=self._record_timeline, compiled=self._compiled,
                          changes=self._report_changes)
        n_off = self._n_off
        new._grow_officers(n_off)
        new._last_t[:n_off] = self._last_t[:n_off]
        new._last_xya[:n_off] = self._last_xya[:n_off]
        new._last_g[:n_off] = self._last_g[:n_off]
        new._on[:n_off] = self._on[:n_off]
        new._capsets[:n_off] = self._capsets[:n_off]
        for o in range(n_off):
            for c in new._capsets[o]:
                col = new._cap_col.get(c)
                if col is not None:
                    new._caps[o, col] = True
        for name in new._flags:
            if name in self._flags:
                new._flags[name] = self._flags[name]
        for name in new._gates:
            if name in self._gates:
                new._gates[name] = self._gates[name]
        new._active = np.array([new._rule_active(i) for i in range(new._n_rules)], bool)

        old_index = {(p.id, r.id): i for i, (p, r) in enumerate(self._pairs)}
        # Memberships under the new rules, from each fresh officer's last fix.
        fresh = np.flatnonzero(new._last_t[:n_off] + new._stale > h)
        if len(fresh) and new._n_rules:
            xya = new._last_xya[fresh]
            ck, cr, cin, room = new._classify(xya[:, 0], xya[:, 1], xya[:, 2])
            officers = fresh[ck]
            ends = new._ends(new._last_t[officers], new._last_g[officers], room)
            keys = []
            key_ends = []
            for o, r, is_in, e in zip(officers.tolist(), cr.tolist(), cin.tolist(),
                                      ends.tolist(), strict=True):
                if e <= h:
                    continue  # a scan whose grown accuracy has already put it out
                if not is_in:
                    post, rule = new._pairs[r]
                    i = old_index.get((post.id, rule.id))
                    old_key = o * self._n_rules + i if i is not None else -1
                    k = int(np.searchsorted(self._carry, old_key))
                    is_in = i is not None and k < len(self._carry) and self._carry[k] == old_key
                if is_in:
                    keys.append(o * new._n_rules + r)
                    key_ends.append(e)
            by_key = np.argsort(np.asarray(keys, np.int64), kind="stable")
            new._carry = np.asarray(keys, np.int64)[by_key]
            new._carry_end = np.asarray(key_ends, np.int64)[by_key]

        changes: list[CoverChange] = []
        for i, (post, rule) in enumerate(self._pairs):
            j = new._index_of(post.id, rule.id)
            start = self._lapse_start[i]
            if j is not None:
                st = self._stats[i]
                st.need = new._pairs[j][1].need
                new._stats[j] = st
                new._count_at_h[j] = self._count_at_h[i]
                if start is not None:
                    new._deficit[j] = True
                    new._lapse_start[j] = start
                    new._lapse_min[j] = self._lapse_min[i]
                    new._lapse_alerted[j] = self._lapse_alerted[i]
                continue
            self.retired_stats.append(self._stats[i])
            if start is None:
                continue
            due = start + self._grace[i]
            if not self._lapse_alerted[i] and due < h:
                self._lapse_alerted[i] = True
                self._stats[i].alerts += 1
                changes.append(CoverChange("alert", post.id, rule.id, due, start,
                                           int(self._lapse_min[i])))
            alert_at = due if self._lapse_alerted[i] else None
            self.lapses.append(Lapse(post.id, rule.id, start, h, alert_at, int(self._lapse_min[i])))
            self._stats[i].longest_lapse_us = max(self._stats[i].longest_lapse_us, h - start)
            changes.append(CoverChange("lapse-ended", post.id, rule.id, h, start,
                                       int(self._count_at_h[i])))
        new.lapses = self.lapses
        new.retired_stats = self.retired_stats
        new._pending_fixes = self._pending_fixes
        new._pending_control = self._pending_control
        self.__dict__.update(new.__dict__)
        return changes

    def _index_of(self, post_id: str, rule_id: str) -> int | None:
        for i, (p, r) in enumerate(self._pairs):
            if p.id == post_id and r.id == rule_id:
                return i
        return None

    def rule_states(self) -> list[RuleState]:
        """Each rule's state at the horizon (after the last finished window)."""
        out = []
        for i, (post, rule) in enumerate(self._pairs):
            out.append(
                RuleState(
                    post.id,
                    rule.id,
                    bool(self._active[i]),
                    int(self._count_at_h[i]),
                    rule.need,
                    self._lapse_start[i],
                    int(self._lapse_min[i]),
                    self._lapse_alerted[i],
                )
            )
        return out

    def officer_last_fix(self, officer: int) -> int | None:
        """Time of an officer's latest processed fix, or None."""
        if officer >= self._n_off or self._last_t[officer] == _NEVER:
            return None
        return int(self._last_t[officer])

    def officer_duty(self, officer: int) -> tuple[bool, frozenset[str]]:
        """(on duty, capabilities) at the horizon."""
        if officer >= self._n_off:
            return False, frozenset()
        return bool(self._on[officer]), self._capsets[officer]

    def officer_rules(self, officer: int) -> list[tuple[str, str]]:
        """(post, rule) pairs the officer is "in" by their latest fix (fresh or not)."""
        n = self._n_rules
        lo = np.searchsorted(self._carry, officer * n)
        hi = np.searchsorted(self._carry, (officer + 1) * n)
        return [
            (self._pairs[int(k % n)][0].id, self._pairs[int(k % n)][1].id)
            for k in self._carry[lo:hi]
        ]

    # -- internals --------------------------------------------------------

    def _take_pending(self, horizon: int) -> tuple[FixColumns, list[ControlEvent]]:
        fixes = FixColumns.concat(self._pending_fixes)
        if len(fixes):
            t, seq = fixes.t, fixes.seq
            # Usually fed in (t, seq) order: then the window is a prefix, taken as views.
            if len(t) > 1 and not (
                bool((t[1:] >= t[:-1]).all())
                and (bool((seq[1:] > seq[:-1]).all())
                     or bool(((t[1:] > t[:-1]) | (seq[1:] > seq[:-1])).all()))
            ):
                fixes = fixes.take(np.lexsort((fixes.seq, fixes.t)))
            cut = int(np.searchsorted(fixes.t, horizon))
            if cut == len(fixes):
                self._pending_fixes = []
            else:
                self._pending_fixes = [fixes.take(slice(cut, None))]
                fixes = fixes.take(slice(0, cut))
        else:
            self._pending_fixes = []
        if self._pending_control:
            pending = self._pending_control
            ts = np.fromiter(map(_T, pending), np.int64, len(pending))
            if int(ts.max()) < horizon:  # usually: every one is due
                control, self._pending_control = pending, []
            else:
                due = (ts < horizon).tolist()
                control = list(compress(pending, due))
                self._pending_control = [e for e, d in zip(pending, due, strict=True) if not d]
                ts = ts[ts < horizon]
            if len(control) > 1:
                # Usually in order already: checked without a key tuple per event, and
                # the sequence numbers read only where times tie.
                ties = np.flatnonzero(ts[1:] == ts[:-1])
                ordered = bool((ts[1:] >= ts[:-1]).all())
                if ordered and len(ties):
                    seqs = np.fromiter(map(_SEQ, control), np.int64, len(control))
                    ordered = bool((seqs[ties + 1] >= seqs[ties]).all())
                if not ordered:
                    seqs = np.fromiter(map(_SEQ, control), np.int64, len(control))
                    control = [control[i] for i in np.lexsort((seqs, ts)).tolist()]
        else:
            control = []
        return fixes, control

    def _advance(self, horizon: int, stats_end: int) -> list[CoverChange]:
        if self._closed:
            raise OutOfOrderError("the engine is closed")
        if horizon <= self._h:
            return []
        fixes, control = self._take_pending(horizon)
        changes = self._window(self._h, horizon, min(stats_end, horizon), fixes, control)
        self._h = horizon
        return changes

