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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from coverwatch.domain.events import (
    DutyEvent,
    EventBatch,
    FixColumns,
    FlagEvent,
    GateEvent,
)
from coverwatch.domain.geometry import signed_distance
from coverwatch.domain.site import Site
from coverwatch.domain.time import seconds_to_us
from coverwatch.engine._index import RuleGrid
from coverwatch.engine.results import CoverChange, Lapse, RuleStats, TimelinePoint
from coverwatch.errors import OutOfOrderError
from coverwatch.planning.network import ReachField, build_network

__all__ = ["CoverEngine", "RuleState"]

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]

_NEVER = -(1 << 62)  # "no fix yet": far enough back that it is always stale
_INF = 1 << 62

ControlEvent = DutyEvent | GateEvent | FlagEvent


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


def _stable_argsort(values: npt.NDArray[np.integer], bound: int) -> npt.NDArray[np.intp]:
    # numpy's stable sort is a radix sort for 16-bit keys: much faster than mergesort.
    if bound <= 1 << 16:
        return np.argsort(values.astype(np.uint16), kind="stable")
    return np.argsort(values, kind="stable")


class CoverEngine:
    """Evaluates a site's cover rules over a stream of events; see the module docstring."""

    def __init__(self, site: Site, start: int, *, timeline: bool = False) -> None:
        self.site = site
        self._stale = seconds_to_us(site.stale_after_s)
        self._record_timeline = timeline
        self._h = start
        self._closed = False

        pairs = site.rules()
        self._pairs = pairs
        n = len(pairs)
        self._n_rules = n
        self._within = np.array([r.within_m for _, r in pairs], np.float64)
        self._release = np.array([r.release_m for _, r in pairs], np.float64)
        self._need = np.array([r.need for _, r in pairs], np.int64)
        self._grace = [seconds_to_us(r.grace_s) for _, r in pairs]
        caps = sorted({r.capability for _, r in pairs if r.capability is not None})
        self._cap_col = {c: i + 1 for i, c in enumerate(caps)}  # column 0 means "any"
        self._rule_cap = np.array(
            [0 if r.capability is None else self._cap_col[r.capability] for _, r in pairs],
            np.int64,
        )
        self._is_point = np.array([p.at is not None for p, _ in pairs], bool)
        self._px = np.array([p.at[0] if p.at else np.nan for p, _ in pairs], np.float64)
        self._py = np.array([p.at[1] if p.at else np.nan for p, _ in pairs], np.float64)
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
        self._speed = np.array([site.speed_for(r.capability) for _, r in pairs], np.float64)
        # Travel is never shorter than the straight line to the post, so a pair with
        # d beyond this (as in RuleGrid: a metre spare for rounding) is out of reach.
        self._reach_radius = self._reach_s * self._speed * (1 + 1e-9) + 1.0

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
        self._active = np.array([self._rule_active(i) for i in range(n)], bool)

        # Per-officer state, grown on demand.
        self._n_off = 0
        self._last_t = np.empty(0, np.int64)
        self._last_xya = np.empty((0, 3), np.float64)  # x, y, accuracy of the last fix
        self._on = np.empty(0, bool)
        self._caps = np.empty((0, len(caps) + 1), bool)
        self._capsets: list[frozenset[str]] = []
        # Memberships ("in") at each officer's last fix, as sorted keys officer * n + rule.
        self._carry = np.empty(0, np.int64)

        # Per-rule lapse state.
        self._deficit = np.zeros(n, bool)
        self._lapse_start: list[int | None] = [None] * n
        self._lapse_min = [0] * n
        self._lapse_alerted = [False] * n
        self._count_at_h = np.zeros(n, np.int64)

        self.lapses: list[Lapse] = []
        self.stats = [RuleStats(p.id, r.id, r.need) for p, r in pairs]
        self.retired_stats: list[RuleStats] = []  # rules removed by switch_site
        self._pending_fixes: list[FixColumns] = []
        self._pending_control: list[ControlEvent] = []

    # -- public API -------------------------------------------------------

    @property
    def horizon(self) -> int:
        """Event time up to which (exclusive) the state is final."""
        return self._h

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
        for ev in batch.control:
            if ev.t < self._h:
                raise OutOfOrderError(
                    f"event (seq {ev.seq}) at t={ev.t} is before the engine horizon {self._h}"
                )
            self._pending_control.append(ev)

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
        self._pending_fixes = [f.take(f.t <= end) for f in self._pending_fixes]
        self._pending_control = [e for e in self._pending_control if e.t <= end]
        changes = self._advance(end + 1, stats_end=end)
        for i, start in enumerate(self._lapse_start):
            if start is not None:
                post, rule = self._pairs[i]
                alert_at = start + self._grace[i] if self._lapse_alerted[i] else None
                self.lapses.append(
                    Lapse(post.id, rule.id, start, None, alert_at, self._lapse_min[i])
                )
                st = self.stats[i]
                st.longest_lapse_us = max(st.longest_lapse_us, end - start)
        self.lapses.sort(key=lambda lp: (lp.start, lp.post, lp.rule))
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
        new = CoverEngine(site, h, timeline=self._record_timeline)
        n_off = self._n_off
        new._grow_officers(n_off)
        new._last_t[:n_off] = self._last_t[:n_off]
        new._last_xya[:n_off] = self._last_xya[:n_off]
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
            ck, cr, cin = new._classify(xya[:, 0], xya[:, 1], xya[:, 2])
            officers = fresh[ck]
            keys = []
            for o, r, is_in in zip(officers.tolist(), cr.tolist(), cin.tolist(), strict=True):
                if not is_in:
                    post, rule = new._pairs[r]
                    i = old_index.get((post.id, rule.id))
                    old_key = o * self._n_rules + i if i is not None else -1
                    k = int(np.searchsorted(self._carry, old_key))
                    is_in = i is not None and k < len(self._carry) and self._carry[k] == old_key
                if is_in:
                    keys.append(o * new._n_rules + r)
            new._carry = np.sort(np.asarray(keys, np.int64))

        changes: list[CoverChange] = []
        for i, (post, rule) in enumerate(self._pairs):
            j = new._index_of(post.id, rule.id)
            start = self._lapse_start[i]
            if j is not None:
                st = self.stats[i]
                st.need = new._pairs[j][1].need
                new.stats[j] = st
                new._count_at_h[j] = self._count_at_h[i]
                if start is not None:
                    new._deficit[j] = True
                    new._lapse_start[j] = start
                    new._lapse_min[j] = self._lapse_min[i]
                    new._lapse_alerted[j] = self._lapse_alerted[i]
                continue
            self.retired_stats.append(self.stats[i])
            if start is None:
                continue
            due = start + self._grace[i]
            if not self._lapse_alerted[i] and due < h:
                self._lapse_alerted[i] = True
                self.stats[i].alerts += 1
                changes.append(CoverChange("alert", post.id, rule.id, due, start,
                                           self._lapse_min[i]))
            alert_at = due if self._lapse_alerted[i] else None
            self.lapses.append(Lapse(post.id, rule.id, start, h, alert_at, self._lapse_min[i]))
            self.stats[i].longest_lapse_us = max(self.stats[i].longest_lapse_us, h - start)
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
                    self._lapse_min[i],
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

    def _rule_active(self, i: int) -> bool:
        post, rule = self._pairs[i]
        if rule.when is not None and not self._flags.get(rule.when, False):
            return False
        return not (rule.when_gate_open and not self._gates.get(post.id, False))

    def _grow_officers(self, n: int) -> None:
        if n <= self._n_off:
            return
        cap = max(n, 2 * self._n_off, 64)
        last_t = np.full(cap, _NEVER, np.int64)
        last_t[: self._n_off] = self._last_t[: self._n_off]
        on = np.zeros(cap, bool)
        on[: self._n_off] = self._on[: self._n_off]
        caps = np.zeros((cap, self._caps.shape[1]), bool)
        caps[: self._n_off] = self._caps[: self._n_off]
        caps[:, 0] = True
        xya = np.zeros((cap, 3), np.float64)
        xya[: self._n_off] = self._last_xya[: self._n_off]
        self._last_t, self._on, self._caps, self._last_xya = last_t, on, caps, xya
        self._capsets.extend([frozenset()] * (cap - len(self._capsets)))
        self._n_off = cap

    def _take_pending(self, horizon: int) -> tuple[FixColumns, list[ControlEvent]]:
        fixes = FixColumns.concat(self._pending_fixes)
        if len(fixes):
            now = fixes.t < horizon
            if now.all():
                self._pending_fixes = []
            else:
                self._pending_fixes = [fixes.take(~now)]
                fixes = fixes.take(now)
            t = fixes.t
            if len(t) > 1 and not (
                (np.diff(t) > 0) | ((np.diff(t) == 0) & (np.diff(fixes.seq) > 0))
            ).all():
                fixes = fixes.take(np.lexsort((fixes.seq, fixes.t)))
        else:
            self._pending_fixes = []
        control = [e for e in self._pending_control if e.t < horizon]
        self._pending_control = [e for e in self._pending_control if e.t >= horizon]
        control.sort(key=lambda e: (e.t, e.seq))
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

    def _signed_distance(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
                         rule: I64) -> npt.NDArray[np.float64]:
        """sd for each (fix, rule) pair; ``rule`` must be sorted (pairs grouped by rule)."""
        dx = x - self._px[rule]
        dy = y - self._py[rule]
        sd = np.sqrt(dx * dx + dy * dy)
        if self._area_rules:
            bounds = np.searchsorted(rule, np.arange(self._n_rules + 1))
            for r in self._area_rules:
                lo, hi = int(bounds[r]), int(bounds[r + 1])
                if hi > lo:
                    sd[lo:hi] = signed_distance(x[lo:hi], y[lo:hi], area=self._pairs[r][0].area)
        return sd

    def _classify(self, fx: F64, fy: F64, facc: F64) -> tuple[I64, I64, BOOL]:
        """(fix, rule, in) for every pair not "out": d <= release_m (and reach).

        ``in`` is d <= within_m; the other pairs are in the hysteresis band.
        Pairs come grouped by rule, fixes in their given order within a rule.
        """
        ck, cr = self._grid.candidates(fx, fy)
        if not len(ck):
            return ck, cr, np.zeros(0, bool)
        by_rule = _stable_argsort(cr, self._n_rules)
        ck, cr = ck[by_rule], cr[by_rule]
        acc = facc[ck]
        d = self._signed_distance(fx[ck], fy[ck], cr) + acc
        keep = d <= self._release[cr]
        if self._reach is not None:
            # A reach rule also needs travel time <= reach_s; over it is "out".
            sel = np.flatnonzero(keep & (self._rule_target[cr] >= 0))
            far = d[sel] > self._reach_radius[cr[sel]]
            if far.any():
                keep[sel[far]] = False
                sel = sel[~far]
            if len(sel):
                dist = self._reach.travel_m(fx, fy, ck[sel], self._rule_target[cr[sel]])
                travel = (dist + acc[sel]) / self._speed[cr[sel]]
                keep[sel] = travel <= self._reach_s[cr[sel]]
        ck, cr, d = ck[keep], cr[keep], d[keep]
        return ck, cr, d <= self._within[cr]

    def _memberships(
        self, fixes: FixColumns
    ) -> tuple[I64, I64, I64, I64, I64, BOOL]:
        """Contribution intervals (officer, rule, start, end) from this window's fixes.

        Also returns, for the carry-over, the officers seen and the new
        membership keys at their last fixes (as the last two values packed:
        ``new_keys`` and ``seen`` mask over officers).
        """
        n_rules = self._n_rules
        stale = self._stale
        n = len(fixes)
        order = _stable_argsort(fixes.officer, self._n_off)
        go = fixes.officer[order].astype(np.int64)
        gt = fixes.t[order]
        first = np.empty(n, bool)
        first[0] = True
        np.not_equal(go[1:], go[:-1], out=first[1:])
        last = np.empty(n, bool)
        last[-1] = True
        last[:-1] = first[1:]
        prev_t = np.empty(n, np.int64)
        prev_t[1:] = gt[:-1]
        prev_t[first] = self._last_t[go[first]]
        linked = (gt - prev_t) < stale
        next_t = np.empty(n, np.int64)
        next_t[:-1] = gt[1:]
        next_t[last] = _INF

        fx = fixes.x[order]
        fy = fixes.y[order]
        facc = fixes.accuracy[order]
        ck, cr, cin = self._classify(fx, fy, facc)
        m = len(ck)
        if m:
            gk = go[ck]
            lp = np.zeros(m, bool)
            lp[1:] = (cr[1:] == cr[:-1]) & (ck[1:] == ck[:-1] + 1)
            lp &= linked[ck] & ~first[ck]
            carried = np.zeros(m, bool)
            at_first = first[ck] & linked[ck]
            if len(self._carry) and at_first.any():
                keys = gk[at_first] * n_rules + cr[at_first]
                pos = np.searchsorted(self._carry, keys)
                pos[pos >= len(self._carry)] = 0
                carried[at_first] = self._carry[pos] == keys
            determined = cin | ~lp
            value = cin | carried
            idx = np.where(determined, np.arange(m), 0)
            np.maximum.accumulate(idx, out=idx)
            mem = value[idx]
            # Runs of "in" along linked chains become single intervals.
            cont = np.zeros(m, bool)
            cont[1:] = lp[1:] & mem[:-1]
            starts = mem & ~cont
            ends = np.zeros(m, bool)
            ends[:-1] = mem[:-1] & ~cont[1:]
            ends[-1] = mem[-1]
            s_idx = np.flatnonzero(starts)
            e_idx = np.flatnonzero(ends)
            s_fix = ck[s_idx]
            e_fix = ck[e_idx]
            iv_off = go[s_fix]
            iv_rule = cr[s_idx]
            iv_s = gt[s_fix]
            iv_e = np.minimum(next_t[e_fix], gt[e_fix] + stale)
            at_last = mem & last[ck]
            new_keys = gk[at_last] * n_rules + cr[at_last]
        else:
            empty = np.empty(0, np.int64)
            iv_off = iv_rule = iv_s = iv_e = new_keys = empty

        # Contributions of the carried last fixes, up to each officer's next fix.
        seen = np.zeros(self._n_off, bool)
        seen[go] = True
        first_t = np.full(self._n_off, _INF, np.int64)
        first_t[go[first]] = gt[first]
        if len(self._carry):
            c_off = self._carry // n_rules
            c_rule = self._carry % n_rules
            c_s = self._last_t[c_off]
            c_e = np.minimum(c_s + stale, first_t[c_off])
            iv_off = np.concatenate((c_off, iv_off))
            iv_rule = np.concatenate((c_rule, iv_rule))
            iv_s = np.concatenate((c_s, iv_s))
            iv_e = np.concatenate((c_e, iv_e))
            keep_old = self._carry[~seen[c_off]]
        else:
            keep_old = self._carry
        self._last_t[go[last]] = gt[last]
        self._last_xya[go[last]] = np.column_stack((fx[last], fy[last], facc[last]))
        self._carry = np.sort(np.concatenate((keep_old, new_keys)))
        return iv_off, iv_rule, iv_s, iv_e, new_keys, seen

    def _carry_intervals(self) -> tuple[I64, I64, I64, I64]:
        """Contribution intervals from the carried last fixes, for a window without fixes."""
        n_rules = self._n_rules
        c_off = self._carry // n_rules
        c_rule = self._carry % n_rules
        c_s = self._last_t[c_off]
        return c_off, c_rule, c_s, c_s + self._stale

    def _eligible(
        self, h0: int, iv_off: I64, iv_rule: I64, iv_s: I64, iv_e: I64,
        duty: Sequence[DutyEvent],
    ) -> tuple[I64, I64, I64]:
        """Keep the parts of intervals when the officer is on duty and capable."""
        if not duty:
            ok = self._on[iv_off] & self._caps[iv_off, self._rule_cap[iv_rule]]
            return iv_rule[ok], iv_s[ok], iv_e[ok]
        changed = np.zeros(self._n_off, bool)
        timelines: dict[int, list[tuple[int, bool, frozenset[str]]]] = {}
        for ev in duty:
            changed[ev.officer] = True
            tl = timelines.setdefault(
                ev.officer, [(h0, bool(self._on[ev.officer]), self._capsets[ev.officer])]
            )
            if tl[-1][0] == ev.t:
                tl[-1] = (ev.t, ev.on, ev.capabilities)
            else:
                tl.append((ev.t, ev.on, ev.capabilities))
        plain = ~changed[iv_off]
        ok = plain & self._on[iv_off] & self._caps[iv_off, self._rule_cap[iv_rule]]
        rules = [iv_rule[ok]]
        starts = [iv_s[ok]]
        ends = [iv_e[ok]]
        extra_r: list[int] = []
        extra_s: list[int] = []
        extra_e: list[int] = []
        for k in np.flatnonzero(~plain):
            o, r, s, e = int(iv_off[k]), int(iv_rule[k]), int(iv_s[k]), int(iv_e[k])
            cap = self._pairs[r][1].capability
            tl = timelines[o]
            for j, (t_from, on, capset) in enumerate(tl):
                t_to = tl[j + 1][0] if j + 1 < len(tl) else _INF
                lo, hi = max(s, t_from), min(e, t_to)
                if lo < hi and on and (cap is None or cap in capset):
                    extra_r.append(r)
                    extra_s.append(lo)
                    extra_e.append(hi)
        rules.append(np.asarray(extra_r, np.int64))
        starts.append(np.asarray(extra_s, np.int64))
        ends.append(np.asarray(extra_e, np.int64))
        for ev in duty:
            self._on[ev.officer] = ev.on
            self._capsets[ev.officer] = ev.capabilities
            row = np.zeros(self._caps.shape[1], bool)
            row[0] = True
            for c in ev.capabilities:
                col = self._cap_col.get(c)
                if col is not None:
                    row[col] = True
            self._caps[ev.officer] = row
        return np.concatenate(rules), np.concatenate(starts), np.concatenate(ends)

    def _activity(
        self, control: Sequence[ControlEvent]
    ) -> dict[int, tuple[list[int], list[bool]]]:
        """Apply flag/gate events; returns, per affected rule, its activity changes."""
        changes: dict[int, tuple[list[int], list[bool]]] = {}
        i = 0
        events = [e for e in control if not isinstance(e, DutyEvent)]
        while i < len(events):
            t = events[i].t
            touched: set[int] = set()
            while i < len(events) and events[i].t == t:
                ev = events[i]
                if isinstance(ev, FlagEvent):
                    self._flags[ev.flag] = ev.on
                    touched.update(self._rules_by_flag.get(ev.flag, ()))
                elif isinstance(ev, GateEvent):
                    self._gates[ev.post] = ev.open
                    touched.update(self._rules_by_gate.get(ev.post, ()))
                i += 1
            for r in touched:
                now = self._rule_active(r)
                times, values = changes.setdefault(r, ([], []))
                times.append(t)
                values.append(now)
        return changes

    def _window(
        self, h0: int, h1: int, h_stats: int, fixes: FixColumns, control: list[ControlEvent]
    ) -> list[CoverChange]:
        n_rules = self._n_rules
        if len(fixes):
            self._grow_officers(int(fixes.officer.max()) + 1)
        duty = [e for e in control if isinstance(e, DutyEvent)]
        if duty:
            self._grow_officers(max(e.officer for e in duty) + 1)
        if n_rules == 0:
            for ev in duty:
                self._on[ev.officer] = ev.on
                self._capsets[ev.officer] = ev.capabilities
            if len(fixes):
                self._memberships(fixes)
            return []

        if len(fixes):
            iv_off, iv_rule, iv_s, iv_e, _, _ = self._memberships(fixes)
        else:
            iv_off, iv_rule, iv_s, iv_e = self._carry_intervals()
        np.maximum(iv_s, h0, out=iv_s)
        np.minimum(iv_e, h1, out=iv_e)
        live = iv_s < iv_e
        iv_off, iv_rule, iv_s, iv_e = iv_off[live], iv_rule[live], iv_s[live], iv_e[live]
        iv_rule, iv_s, iv_e = self._eligible(h0, iv_off, iv_rule, iv_s, iv_e, duty)
        active_at_h0 = self._active.copy()
        act = self._activity(control)
        for r, (_, values) in act.items():
            self._active[r] = values[-1]
        # Drop carried memberships that can no longer matter (stale before h1).
        if len(self._carry):
            c_off = self._carry // n_rules
            self._carry = self._carry[self._last_t[c_off] + self._stale > h1]

        # Step points per rule: +1 at starts, -1 at ends (inside the window), and a
        # zero step at h0 and at each activity change so every state is evaluated.
        ends_in = iv_e < h1
        act_rules = [r for r, (ts, _) in act.items() for _ in ts]
        act_times = [t for _, (ts, _) in act.items() for t in ts]
        p_rule = np.concatenate((
            iv_rule, iv_rule[ends_in], np.arange(n_rules, dtype=np.int64),
            np.asarray(act_rules, np.int64),
        ))
        p_time = np.concatenate((
            iv_s, iv_e[ends_in], np.full(n_rules, h0, np.int64), np.asarray(act_times, np.int64),
        ))
        p_delta = np.concatenate((
            np.ones(len(iv_rule), np.int64), -np.ones(int(ends_in.sum()), np.int64),
            np.zeros(n_rules + len(act_rules), np.int64),
        ))
        span = h1 - h0
        if span < (1 << 62) // max(n_rules, 1):
            order = np.argsort(p_rule * span + (p_time - h0), kind="stable")
        else:
            order = np.lexsort((p_time, p_rule))
        p_rule, p_time, p_delta = p_rule[order], p_time[order], p_delta[order]
        cum = np.cumsum(p_delta)
        rule_first = np.empty(len(p_rule), bool)
        rule_first[0] = True
        np.not_equal(p_rule[1:], p_rule[:-1], out=rule_first[1:])
        # Every rule has a point at h0, so each rule's group starts with a count of 0.
        base = np.repeat(cum[rule_first] - p_delta[rule_first],
                         np.diff(np.append(np.flatnonzero(rule_first), len(p_rule))))
        count_all = cum - base
        last_of_key = np.empty(len(p_rule), bool)
        last_of_key[-1] = True
        last_of_key[:-1] = (p_rule[1:] != p_rule[:-1]) | (p_time[1:] != p_time[:-1])
        u_rule = p_rule[last_of_key]
        u_time = p_time[last_of_key]
        u_count = count_all[last_of_key]
        nu = len(u_rule)
        u_first = np.empty(nu, bool)
        u_first[0] = True
        np.not_equal(u_rule[1:], u_rule[:-1], out=u_first[1:])
        u_last = np.empty(nu, bool)
        u_last[-1] = True
        u_last[:-1] = u_first[1:]

        u_active = active_at_h0[u_rule]
        if act:
            bounds = np.searchsorted(u_rule, np.arange(n_rules + 1))
            for r, (times, values) in act.items():
                lo, hi = int(bounds[r]), int(bounds[r + 1])
                tv = np.asarray(times, np.int64)
                vv = np.asarray([active_at_h0[r], *values], bool)
                u_active[lo:hi] = vv[np.searchsorted(tv, u_time[lo:hi], side="right")]
        deficit = u_active & (u_count < self._need[u_rule])

        # Time totals (only up to h_stats, which is the window end on close).
        nxt = np.empty(nu, np.int64)
        nxt[:-1] = u_time[1:]
        nxt[u_last] = h_stats
        dur = np.clip(np.minimum(nxt, h_stats) - u_time, 0, None)
        act_us = np.bincount(u_rule, weights=dur * u_active, minlength=n_rules)
        cov_us = np.bincount(u_rule, weights=dur * (u_active & ~deficit), minlength=n_rules)
        for r in np.flatnonzero(act_us).tolist():
            st = self.stats[r]
            st.active_us += round(act_us[r])
            st.covered_us += round(cov_us[r])
        self._count_at_h = u_count[u_last]

        if self._record_timeline:
            self._record(u_rule, u_time, u_count, u_active, deficit, u_first)

        prev = np.empty(nu, bool)
        prev[1:] = deficit[:-1]
        prev[u_first] = self._deficit[u_rule[u_first]]
        self._deficit = deficit[u_last]
        changed = deficit != prev
        if not changed.any() and not self._deficit.any():
            return []
        return self._lapse_changes(h1, u_rule, u_time, u_count, deficit, prev, u_first)

    def _lapse_changes(
        self, h1: int, u_rule: I64, u_time: I64, u_count: I64, deficit: BOOL, prev: BOOL,
        u_first: BOOL,
    ) -> list[CoverChange]:
        out: list[CoverChange] = []
        # A head is the first point of a deficit run in this window: a start
        # transition, or the rule's first point while a lapse carries over.
        head = deficit & (~prev | u_first)
        heads = np.flatnonzero(head)
        ends = np.flatnonzero(~deficit & prev)
        d_idx = np.flatnonzero(deficit)
        mins = np.minimum.reduceat(u_count[d_idx], np.flatnonzero(head[d_idx])) if len(d_idx) \
            else np.empty(0, np.int64)
        steps = sorted([(int(k), int(mins[i])) for i, k in enumerate(heads)]
                       + [(int(k), -1) for k in ends])
        for k, low in steps:
            r = int(u_rule[k])
            post, rule = self._pairs[r]
            if low >= 0:
                if prev[k]:
                    self._lapse_min[r] = min(self._lapse_min[r], low)
                    continue
                start = int(u_time[k])
                self._lapse_start[r] = start
                self._lapse_min[r] = low
                self._lapse_alerted[r] = False
                self.stats[r].lapses += 1
                out.append(CoverChange("lapse-started", post.id, rule.id, start, start,
                                       int(u_count[k])))
                continue
            start_or_none = self._lapse_start[r]
            assert start_or_none is not None
            start = start_or_none
            end = int(u_time[k])
            due = start + self._grace[r]
            if not self._lapse_alerted[r] and due < end:
                self._lapse_alerted[r] = True
                self.stats[r].alerts += 1
                out.append(CoverChange("alert", post.id, rule.id, due, start, self._lapse_min[r]))
            alert_at = due if self._lapse_alerted[r] else None
            self.lapses.append(Lapse(post.id, rule.id, start, end, alert_at, self._lapse_min[r]))
            st = self.stats[r]
            st.longest_lapse_us = max(st.longest_lapse_us, end - start)
            self._lapse_start[r] = None
            self._lapse_alerted[r] = False
            out.append(CoverChange("lapse-ended", post.id, rule.id, end, start, int(u_count[k])))
        # Lapses still open at h1 whose grace has run out by then are alerted now.
        for r in np.flatnonzero(self._deficit).tolist():
            start_or_none = self._lapse_start[r]
            assert start_or_none is not None
            due = start_or_none + self._grace[r]
            if not self._lapse_alerted[r] and due < h1:
                post, rule = self._pairs[r]
                self._lapse_alerted[r] = True
                self.stats[r].alerts += 1
                out.append(CoverChange("alert", post.id, rule.id, due, start_or_none,
                                       self._lapse_min[r]))
        out.sort(key=lambda c: (c.t, c.post, c.rule))
        return out

    def _record(
        self, u_rule: I64, u_time: I64, u_count: I64, u_active: BOOL, deficit: BOOL,
        u_first: BOOL,
    ) -> None:
        state = np.where(~u_active, 0, np.where(deficit, 2, 1))
        names = ("inactive", "covered", "lapsed")
        for k in range(len(u_rule)):
            tl = self.stats[int(u_rule[k])].timeline
            s = names[int(state[k])]
            c = int(u_count[k])
            if tl and tl[-1].state == s and tl[-1].count == c:
                continue
            tl.append(TimelinePoint(int(u_time[k]), s, c))
