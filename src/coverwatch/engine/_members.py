"""The cover engine's memberships: which officers count for which rule, and when.

A mixin of :class:`~coverwatch.engine._cover.CoverEngine` (steps 1-3 of its
docstring): fixes linked per officer, candidate (fix, rule) pairs from the
grid, hysteresis along each chain, contribution intervals, and the parts of
them when the officer is on duty and capable.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from coverwatch.domain.events import DutyEvent, FixColumns
from coverwatch.domain.geometry import signed_distance
from coverwatch.domain.site import Post, Rule, Site
from coverwatch.engine._index import RuleGrid
from coverwatch.engine._native import KERNEL, scratch
from coverwatch.engine.results import Lapse, RuleStats
from coverwatch.planning.network import ReachField

__all__ = ["INF", "NEVER", "MembershipMixin"]

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]

_OFFICER, _ON, _CAPABILITIES = attrgetter("officer"), attrgetter("on"), attrgetter("capabilities")

# The compiled pass's first output room per fix (more: it says so, and runs again larger).
ROOM_PER_FIX = 2

NEVER = -(1 << 62)  # "no fix yet": far enough back that it is always stale
INF = 1 << 62
_NEVER, _INF = NEVER, INF


def _stable_argsort(values: npt.NDArray[np.integer], bound: int) -> npt.NDArray[np.intp]:
    # numpy's stable sort is a radix sort for 16-bit keys: much faster than mergesort.
    if bound <= 1 << 16:
        return np.argsort(values.astype(np.uint16), kind="stable")
    return np.argsort(values, kind="stable")



class MembershipMixin:
    """Memberships and contribution intervals; see the module docstring."""

    # The engine's state (set up by CoverEngine.__init__), declared for the type checker.
    site: Site
    lapses: list[Lapse]
    _pairs: list[tuple[Post, Rule]]
    _n_rules: int
    _stale: int
    _record_timeline: bool
    _within: F64
    _release: F64
    _need: I64
    _grace: list[int]
    _cap_col: dict[str, int]
    _rule_cap: I64
    _px: F64
    _py: F64
    _area_rules: list[int]
    _grid: RuleGrid
    _use_kernel: bool
    _layout: tuple[float, float, float, int, int, I64, I64, I64] | None
    _reach: ReachField | None
    _rule_target: I64
    _reach_s: F64
    _speed: F64
    _reach_radius: F64
    _flags: dict[str, bool]
    _gates: dict[str, bool]
    _rules_by_flag: dict[str, list[int]]
    _rules_by_gate: dict[str, list[int]]
    _report_changes: bool
    _active: BOOL
    _n_off: int
    _last_t: I64
    _last_xya: F64
    _last_g: F64
    _on: BOOL
    _caps: BOOL
    _capsets: list[frozenset[str]]
    _carry: I64
    _carry_end: I64
    _deficit: BOOL
    _lapse_start: list[int | None]
    _lapse_min: I64
    _lapse_alerted: list[bool]
    _count_at_h: I64
    _stats: list[RuleStats]
    _active_us: I64
    _covered_us: I64

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
        g = np.zeros(cap, np.float64)
        g[: self._n_off] = self._last_g[: self._n_off]
        self._last_t, self._on, self._caps, self._last_xya = last_t, on, caps, xya
        self._last_g = g
        self._capsets.extend([frozenset()] * (cap - len(self._capsets)))
        self._n_off = cap


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

    def _classify(self, fx: F64, fy: F64, facc: F64) -> tuple[I64, I64, BOOL, F64]:
        """(fix, rule, in, room) for every pair not "out": d <= release_m (and reach).

        ``in`` is d <= within_m; the other pairs are in the hysteresis band.
        ``room`` is how many metres the accuracy may still grow before the pair
        is "out": ``release_m - d``, and for a reach rule at most
        ``reach_s * speed - (travel + accuracy)``.
        Pairs come grouped by rule, fixes in their given order within a rule.
        """
        ck, cr = self._grid.candidates(fx, fy)
        if not len(ck):
            return ck, cr, np.zeros(0, bool), np.zeros(0, np.float64)
        by_rule = _stable_argsort(cr, self._n_rules)
        ck, cr = ck[by_rule], cr[by_rule]
        acc = facc[ck]
        d = self._signed_distance(fx[ck], fy[ck], cr) + acc
        keep = d <= self._release[cr]
        room = self._release[cr] - d
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
                room[sel] = np.minimum(
                    room[sel],
                    self._reach_s[cr[sel]] * self._speed[cr[sel]] - (dist + acc[sel]))
        k = np.flatnonzero(keep)  # one index for four arrays: cheaper than four masks
        ck, cr, d, room = ck[k], cr[k], d[k], room[k]
        return ck, cr, d <= self._within[cr], room

    def _ends(self, t: I64, growth: F64, room: F64) -> I64:
        """When each pair's membership ends as the fix's accuracy grows (exclusive).

        A fix with ``growth`` g > 0 holds while ``g * (t' - t) <= room``, to the
        whole microsecond: ``t + 1 + floor(1e6 * room / g)``; an ordinary fix
        (g = 0) never ends this way (its staleness ends it).
        """
        end = np.full(len(t), _INF, np.int64)
        grows = np.flatnonzero(growth > 0)
        if len(grows):
            steps = np.floor(1e6 * np.maximum(room[grows], 0.0) / growth[grows])
            steps = np.minimum(steps, float(self._stale))
            end[grows] = t[grows] + 1 + steps.astype(np.int64)
        return end

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
        fg = fixes.growth[order]
        ck, cr, cin, room = self._classify(fx, fy, facc)
        m = len(ck)
        if m:
            gk = go[ck]
            pend = self._ends(gt[ck], fg[ck], room)
            lp = np.zeros(m, bool)
            lp[1:] = (cr[1:] == cr[:-1]) & (ck[1:] == ck[:-1] + 1)
            # The previous pair's membership still holds at this fix (a scan's may have ended).
            lp[1:] &= pend[:-1] > gt[ck[1:]]
            lp &= linked[ck] & ~first[ck]
            carried = np.zeros(m, bool)
            at_first = first[ck] & linked[ck]
            if len(self._carry) and at_first.any():
                q = np.flatnonzero(at_first)
                hit, pos = self._find_carried(gk[q], cr[q])
                carried[q[hit]] = self._carry_end[pos[hit]] > gt[ck[q[hit]]]
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
            iv_e = np.minimum(np.minimum(next_t[e_fix], gt[e_fix] + stale), pend[e_idx])
            at_last = mem & last[ck]
            new_keys = gk[at_last] * n_rules + cr[at_last]
            new_ends = pend[at_last]
        else:
            empty = np.empty(0, np.int64)
            iv_off = iv_rule = iv_s = iv_e = new_keys = new_ends = empty

        # Contributions of the carried last fixes, up to each officer's next fix.
        seen = np.zeros(self._n_off, bool)
        seen[go] = True
        first_t = np.full(self._n_off, _INF, np.int64)
        first_t[go[first]] = gt[first]
        if len(self._carry):
            c_off = self._carry // n_rules
            c_rule = self._carry % n_rules
            c_s = self._last_t[c_off]
            c_e = np.minimum(np.minimum(c_s + stale, first_t[c_off]), self._carry_end)
            iv_off = np.concatenate((c_off, iv_off))
            iv_rule = np.concatenate((c_rule, iv_rule))
            iv_s = np.concatenate((c_s, iv_s))
            iv_e = np.concatenate((c_e, iv_e))
            old = ~seen[c_off]
            keep_old, keep_old_ends = self._carry[old], self._carry_end[old]
        else:
            keep_old, keep_old_ends = self._carry, self._carry_end
        self._last_t[go[last]] = gt[last]
        at = go[last]
        self._last_xya[at, 0] = fx[last]
        self._last_xya[at, 1] = fy[last]
        self._last_xya[at, 2] = facc[last]
        self._last_g[go[last]] = fg[last]
        carry = np.concatenate((keep_old, new_keys))
        by_key = np.argsort(carry)  # keys are distinct: no need for a stable sort
        self._carry = carry[by_key]
        self._carry_end = np.concatenate((keep_old_ends, new_ends))[by_key]
        return iv_off, iv_rule, iv_s, iv_e, new_keys, seen

    def _compiled_memberships(
        self, fixes: FixColumns, h0: int, h1: int, eligible: bool
    ) -> tuple[I64, I64, I64, I64, I64 | None] | None:
        """`_memberships` compiled (engine/_ckernel.c), for point rules without reach.

        Returns the same intervals as `_memberships`, already clipped to [h0, h1) and
        without the empty ones, and leaves the same carry as the window does after it
        drops the memberships that can no longer matter. With ``eligible`` (no duty
        change in the window) only the parts that count, as `_eligible` would keep, and
        each rule's count at h0 apart: the intervals from h0 on are in that count (and
        in the list only if they end before h1). None, with nothing changed, when an
        officer is in more rules at once than the kernel holds: numpy's pass then.
        """
        assert KERNEL is not None and self._layout is not None
        x0, y0, cell, nx, ny, c_start, c_count, items = self._layout
        n, nc = len(fixes), len(self._carry)
        cap = nc + ROOM_PER_FIX * n + 64
        columns = [np.ascontiguousarray(a, d) for a, d in (
            (fixes.t, np.int64), (fixes.officer, np.int32), (fixes.x, np.float64),
            (fixes.y, np.float64), (fixes.accuracy, np.float64), (fixes.growth, np.float64))]
        states, marks = scratch(self._n_off)
        while True:
            iv = np.empty((4, cap), np.int64)
            keys = np.empty((2, cap), np.int64)
            at_h0 = np.zeros(self._n_rules, np.int64)
            got = KERNEL.members(
                *columns, self._carry, self._carry_end, self._px, self._py, self._within,
                self._release, items, c_start, c_count, self._last_t, self._last_xya,
                self._last_g, iv[0], iv[1], iv[2], iv[3], keys[0], keys[1], self._on,
                self._caps, self._rule_cap, at_h0, states, marks, x0, y0, cell, nx, ny,
                self._n_rules, self._stale, h0, h1, eligible)
            if got == -2:
                return None
            if got != -1:
                break
            cap *= 2  # nothing was changed: again with room for every pair
        n_iv, n_keys = got
        self._carry, self._carry_end = keys[0, :n_keys].copy(), keys[1, :n_keys].copy()
        return iv[0, :n_iv], iv[1, :n_iv], iv[2, :n_iv], iv[3, :n_iv], \
            (at_h0 if eligible else None)

    def _find_carried(self, officer: I64, rule: I64) -> tuple[BOOL, I64]:
        """For (officer, rule) pairs: whether each is a carried membership, and where.

        An officer carries few memberships, so each pair is compared with its
        officer's run of the sorted keys, one slot at a time (a few sequential
        passes instead of a binary search per pair over every officer's keys).
        """
        keys = officer * self._n_rules + rule
        per = np.bincount(self._carry // max(self._n_rules, 1), minlength=self._n_off)
        widest = int(per.max()) if len(per) else 0
        if widest > 8:
            pos = np.searchsorted(self._carry, keys)
            pos[pos >= len(self._carry)] = 0
            return self._carry[pos] == keys, pos
        first = np.cumsum(per) - per
        lo, n = first[officer], per[officer]
        hit = np.zeros(len(keys), bool)
        pos = np.zeros(len(keys), np.int64)
        for j in range(widest):
            sel = np.flatnonzero(n > j)
            at = lo[sel] + j
            match = self._carry[at] == keys[sel]
            hit[sel[match]] = True
            pos[sel[match]] = at[match]
        return hit, pos

    def _carry_intervals(self) -> tuple[I64, I64, I64, I64]:
        """Contribution intervals from the carried last fixes, for a window without fixes."""
        n_rules = self._n_rules
        c_off = self._carry // n_rules
        c_rule = self._carry % n_rules
        c_s = self._last_t[c_off]
        return c_off, c_rule, c_s, np.minimum(c_s + self._stale, self._carry_end)

    def _eligible(
        self, h0: int, iv_off: I64, iv_rule: I64, iv_s: I64, iv_e: I64,
        duty: Sequence[DutyEvent],
    ) -> tuple[I64, I64, I64]:
        """Keep the parts of intervals when the officer is on duty and capable."""
        if not duty:
            ok = np.flatnonzero(self._on[iv_off] & self._caps[iv_off, self._rule_cap[iv_rule]])
            return iv_rule[ok], iv_s[ok], iv_e[ok]
        # Each changed officer's duty timeline as segments [from, to) with their state
        # (the state at h0, then each duty event; the last event at an instant wins);
        # the intervals of those officers are cut by the segments, all at once.
        rows: dict[frozenset[str], int] = {}
        n = len(duty)
        e_off = np.fromiter((ev.officer for ev in duty), np.int64, n)
        e_t = np.fromiter((ev.t for ev in duty), np.int64, n)
        e_on = np.fromiter((ev.on for ev in duty), bool, n)
        e_row = np.fromiter((rows.setdefault(ev.capabilities, len(rows)) for ev in duty),
                            np.int64, n)
        cap_rows = np.array([self._caps_row(c) for c in rows], bool).reshape(
            len(rows), self._caps.shape[1])
        by_off = np.argsort(e_off, kind="stable")  # duty is in time order
        e_off, e_t, e_on, e_row = e_off[by_off], e_t[by_off], e_on[by_off], e_row[by_off]
        last = np.ones(n, bool)
        last[:-1] = (e_off[1:] != e_off[:-1]) | (e_t[1:] != e_t[:-1])
        e_off, e_t, e_on, e_row = e_off[last], e_t[last], e_on[last], e_row[last]
        heads = np.ones(len(e_off), bool)
        heads[1:] = e_off[1:] != e_off[:-1]
        changed = e_off[heads]
        # The state at h0 opens the timeline unless an event at h0 replaces it.
        opening = changed[e_t[heads] > h0]
        s_off = np.concatenate((opening, e_off))
        s_from = np.concatenate((np.full(len(opening), h0, np.int64), e_t))
        s_on = np.concatenate((self._on[opening], e_on))
        s_caps = np.concatenate((self._caps[opening], cap_rows[e_row]))
        order = np.lexsort((s_from, s_off))
        s_off, s_from, s_on, s_caps = s_off[order], s_from[order], s_on[order], s_caps[order]
        s_to = np.full(len(s_off), _INF, np.int64)
        same = s_off[1:] == s_off[:-1]
        s_to[:-1][same] = s_from[1:][same]
        n_segs = np.bincount(s_off, minlength=self._n_off)
        first_seg = np.cumsum(n_segs) - n_segs

        plain = n_segs[iv_off] == 0
        ok = plain & self._on[iv_off] & self._caps[iv_off, self._rule_cap[iv_rule]]
        k = np.flatnonzero(~plain)
        counts = n_segs[iv_off[k]]
        rep = np.repeat(k, counts)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        sg = first_seg[iv_off[rep]] + within
        lo = np.maximum(iv_s[rep], s_from[sg])
        hi = np.minimum(iv_e[rep], s_to[sg])
        keep = (lo < hi) & s_on[sg] & s_caps[sg, self._rule_cap[iv_rule[rep]]]
        # The state at h1: each changed officer's last segment.
        end = np.ones(len(s_off), bool)
        end[:-1] = ~same
        self._on[s_off[end]] = s_on[end]
        self._caps[s_off[end]] = s_caps[end]
        for ev in duty:
            self._capsets[ev.officer] = ev.capabilities
        return (np.concatenate((iv_rule[ok], iv_rule[rep][keep])),
                np.concatenate((iv_s[ok], lo[keep])), np.concatenate((iv_e[ok], hi[keep])))

    def _duty_at_once(self, duty: Sequence[DutyEvent], offs: list[int]) -> None:
        """Apply duty changes all at one instant (in time order): the last per officer wins.

        ``offs`` is each event's officer.
        """
        n = len(duty)
        capsets = list(map(_CAPABILITIES, duty))
        # Each distinct set's row, numbered as first seen, in one pass over the events.
        rows: defaultdict[frozenset[str], int] = defaultdict()
        rows.default_factory = rows.__len__
        e_row = np.fromiter(map(rows.__getitem__, capsets), np.int64, n)
        e_off = np.fromiter(offs, np.int64, n)
        e_on = np.fromiter(map(_ON, duty), bool, n)
        cap_rows = np.array([self._caps_row(c) for c in rows], bool).reshape(
            len(rows), self._caps.shape[1])
        if int(np.bincount(e_off).max()) == 1:  # usually one event per officer
            last = np.arange(n)
        else:
            _, first_reversed = np.unique(e_off[::-1], return_index=True)
            last = n - 1 - first_reversed
        self._on[e_off[last]] = e_on[last]
        self._caps[e_off[last]] = cap_rows[e_row[last]]
        lo = offs[0]
        if offs[-1] - lo == n - 1 and bool((np.diff(e_off) == 1).all()):
            # Officers lo, lo + 1, ... once each (interned in first-seen order, a roster's
            # duty at one instant often is): one slice.
            self._capsets[lo:lo + n] = capsets
        else:
            # In order, so the last per officer wins; map runs the stores without a loop body.
            deque(map(self._capsets.__setitem__, offs, capsets), maxlen=0)

    def _caps_row(self, capabilities: frozenset[str]) -> BOOL:
        """An officer's row of the capability matrix: column 0 ("any") and theirs."""
        row = np.zeros(self._caps.shape[1], bool)
        row[0] = True
        for c in capabilities:
            col = self._cap_col.get(c)
            if col is not None:
                row[col] = True
        return row

