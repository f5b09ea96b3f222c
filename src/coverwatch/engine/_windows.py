"""The cover engine's windows: counts per rule over time, activity, lapses and statistics.

A mixin of :class:`~coverwatch.engine._cover.CoverEngine` (step 4 of its
docstring): interval ends become +1/-1 steps per rule; a cumulative sum gives
the count after all events at each instant, which with the rule's activity
gives the lapses. Per-rule work is done for all rules at once in numpy; only
actual changes (a lapse starting or ending) are handled one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import numpy as np

from coverwatch.domain.events import ControlEvent, DutyEvent, FixColumns, FlagEvent, GateEvent
from coverwatch.engine._members import BOOL, I64, MembershipMixin
from coverwatch.engine.results import CoverChange, Lapse, TimelinePoint

__all__ = ["WindowMixin"]

_change_order = attrgetter("t", "post", "rule")
_OFFICER = attrgetter("officer")


class WindowMixin(MembershipMixin):
    """Evaluation of one window ``[h0, h1)``; see the module docstring."""

    def _rule_active(self, i: int) -> bool:
        post, rule = self._pairs[i]
        if rule.when is not None and not self._flags.get(rule.when, False):
            return False
        return not (rule.when_gate_open and not self._gates.get(post.id, False))

    def _activity(
        self, control: Sequence[ControlEvent]
    ) -> dict[int, tuple[list[int], list[bool]]]:
        """Apply flag/gate events; returns, per affected rule, its activity changes."""
        changes: dict[int, tuple[list[int], list[bool]]] = {}
        i = 0
        events = control  # flag and gate events only (the window takes the duty apart)
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
        # Duty apart from flags and gates, in one pass over the events (usually all duty).
        duty: list[DutyEvent] = []
        other: list[ControlEvent] = []
        for ev in control:
            (duty if isinstance(ev, DutyEvent) else other).append(ev)  # type: ignore[arg-type]
        offs: list[int] = []
        if duty:
            offs = list(map(_OFFICER, duty))
            self._grow_officers(max(offs) + 1)
        if n_rules == 0:
            for ev in duty:
                self._on[ev.officer] = ev.on
                self._capsets[ev.officer] = ev.capabilities
            if len(fixes):
                self._memberships(fixes)
            return []

        if self._use_kernel and len(fixes) and duty and duty[-1].t == h0:
            # Every duty change at h0 (as a shift starting): the state from h0 on is each
            # officer's last one, as `_eligible` leaves it, and the window counts at once.
            self._duty_at_once(duty, offs)
            duty = []
        at_h0: I64 | None = None  # each rule's count at h0, when counted apart
        # Clipped to the window, and the carry already trimmed as below; without duty
        # changes also filtered as by `_eligible`, and those from h0 on counted apart.
        got = self._compiled_memberships(fixes, h0, h1, eligible=not duty) \
            if self._use_kernel and len(fixes) else None
        compiled = got is not None
        if got is not None:
            iv_off, iv_rule, iv_s, iv_e, at_h0 = got
        else:
            if len(fixes):
                iv_off, iv_rule, iv_s, iv_e, _, _ = self._memberships(fixes)
            else:
                iv_off, iv_rule, iv_s, iv_e = self._carry_intervals()
            np.maximum(iv_s, h0, out=iv_s)
            np.minimum(iv_e, h1, out=iv_e)
            live = np.flatnonzero(iv_s < iv_e)
            iv_off, iv_rule, iv_s, iv_e = iv_off[live], iv_rule[live], iv_s[live], iv_e[live]
        if at_h0 is None:
            iv_rule, iv_s, iv_e = self._eligible(h0, iv_off, iv_rule, iv_s, iv_e, duty)
            s_rule, s_time = iv_rule, iv_s
        else:
            late = np.flatnonzero(iv_s > h0)  # a start at h0 is in at_h0 already
            s_rule, s_time = iv_rule[late], iv_s[late]
        active_at_h0 = self._active.copy()
        act = self._activity(other)
        for r, (_, values) in act.items():
            self._active[r] = values[-1]
        # Drop carried memberships that can no longer matter (stale before h1).
        if len(self._carry) and not compiled:
            c_off = self._carry // n_rules
            keep = (self._last_t[c_off] + self._stale > h1) & (self._carry_end > h1)
            self._carry, self._carry_end = self._carry[keep], self._carry_end[keep]

        # Step points per rule: +1 at starts, -1 at ends (inside the window), and a
        # zero step at h0 and at each activity change so every state is evaluated.
        ends_in = np.flatnonzero(iv_e < h1)
        act_rules = np.asarray([r for r, (ts, _) in act.items() for _ in ts], np.int64)
        act_times = np.asarray([t for _, (ts, _) in act.items() for t in ts], np.int64)
        span = h1 - h0
        if 3 * span < (1 << 62) // max(n_rules, 1):
            # One sort of packed keys (rule, time, step + 1): numpy's plain sort is
            # several times faster than an argsort and three gathers. The order of
            # the points at one (rule, time) does not matter: only the count after
            # the last of them is read, and each rule's count before its first.
            key = np.concatenate((
                (s_rule * span + (s_time - h0)) * 3 + 2,
                (iv_rule[ends_in] * span + (iv_e[ends_in] - h0)) * 3,
                np.arange(n_rules, dtype=np.int64) * (3 * span) + 1,
                (act_rules * span + (act_times - h0)) * 3 + 1,
            ))
            key.sort()
            p_delta = key % 3 - 1
            key //= 3
            p_rule = key // span
            p_time = key - p_rule * span + h0
        else:
            p_rule = np.concatenate((s_rule, iv_rule[ends_in],
                                     np.arange(n_rules, dtype=np.int64), act_rules))
            p_time = np.concatenate((s_time, iv_e[ends_in], np.full(n_rules, h0, np.int64),
                                     act_times))
            p_delta = np.concatenate((
                np.ones(len(s_rule), np.int64), -np.ones(len(ends_in), np.int64),
                np.zeros(n_rules + len(act_rules), np.int64),
            ))
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
        if at_h0 is not None:
            u_count += at_h0[u_rule]
        nu = len(u_rule)
        u_first = np.empty(nu, bool)
        u_first[0] = True
        np.not_equal(u_rule[1:], u_rule[:-1], out=u_first[1:])
        u_last = np.empty(nu, bool)
        u_last[-1] = True
        u_last[:-1] = u_first[1:]

        u_active = active_at_h0[u_rule]
        if act:
            # Rules driven alike (one flag, say) share their changes: one lookup per group.
            bounds = np.searchsorted(u_rule, np.arange(n_rules + 1))
            alike: dict[tuple[tuple[int, ...], tuple[bool, ...]], list[int]] = {}
            for r, (times, values) in act.items():
                alike.setdefault((tuple(times), (bool(active_at_h0[r]), *values)), []).append(r)
            for (times_g, values_g), members in alike.items():
                rs = np.asarray(members, np.int64)
                lo, size = bounds[rs], bounds[rs + 1] - bounds[rs]
                at = np.repeat(lo - (np.cumsum(size) - size), size) + np.arange(int(size.sum()))
                tv = np.asarray(times_g, np.int64)
                vv = np.asarray(values_g, bool)
                u_active[at] = vv[np.searchsorted(tv, u_time[at], side="right")]
        deficit = u_active & (u_count < self._need[u_rule])

        # Time totals (only up to h_stats, which is the window end on close).
        nxt = np.empty(nu, np.int64)
        nxt[:-1] = u_time[1:]
        nxt[u_last] = h_stats
        dur = np.clip(np.minimum(nxt, h_stats) - u_time, 0, None)
        # Every rule has a point at h0, so the groups are the rules 0 .. n-1 in order.
        groups = np.flatnonzero(u_first)
        self._active_us += np.add.reduceat(dur * u_active, groups)
        self._covered_us += np.add.reduceat(dur * (u_active & ~deficit), groups)
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
        # A lapse carried over from the last window goes on: only its lowest count
        # can change (at the rule's first point, before any end in this window).
        carried = prev[heads]
        if carried.any():
            kept = u_rule[heads[carried]]
            self._lapse_min[kept] = np.minimum(self._lapse_min[kept], mins[carried])
        step_k = np.concatenate((heads[~carried], ends))
        step_low = np.concatenate((mins[~carried], np.full(len(ends), -1, np.int64)))
        order = np.argsort(step_k, kind="stable")
        ks = step_k[order]
        lapse_min = self._lapse_min
        report = self._report_changes
        pairs, stats, grace = self._pairs, self._stats, self._grace
        lapse_start, alerted = self._lapse_start, self._lapse_alerted
        add_lapse = self.lapses.append
        # Plain ints in one go: a numpy scalar read per change costs more than the change.
        for r, t_k, count, low in zip(u_rule[ks].tolist(), u_time[ks].tolist(),
                                      u_count[ks].tolist(), step_low[order].tolist(),
                                      strict=True):
            if low >= 0:
                lapse_start[r] = t_k
                lapse_min[r] = low
                alerted[r] = False
                stats[r].lapses += 1
                if report:
                    post, rule = pairs[r]
                    out.append(CoverChange("lapse-started", post.id, rule.id, t_k, t_k, count))
                continue
            post, rule = pairs[r]
            start_or_none = lapse_start[r]
            assert start_or_none is not None
            start = start_or_none
            end = t_k
            due = start + grace[r]
            low = int(lapse_min[r])
            st = stats[r]
            if not alerted[r] and due < end:
                alerted[r] = True
                st.alerts += 1
                if report:
                    out.append(CoverChange("alert", post.id, rule.id, due, start, low))
            add_lapse(Lapse(post.id, rule.id, start, end, due if alerted[r] else None, low))
            if end - start > st.longest_lapse_us:
                st.longest_lapse_us = end - start
            lapse_start[r] = None
            alerted[r] = False
            if report:
                out.append(CoverChange("lapse-ended", post.id, rule.id, end, start, count))
        # Lapses still open at h1 whose grace has run out by then are alerted now.
        alerted = self._lapse_alerted
        for r in [r for r in np.flatnonzero(self._deficit).tolist() if not alerted[r]]:
            start_or_none = self._lapse_start[r]
            assert start_or_none is not None
            due = start_or_none + self._grace[r]
            if not self._lapse_alerted[r] and due < h1:
                post, rule = self._pairs[r]
                self._lapse_alerted[r] = True
                self._stats[r].alerts += 1
                if report:
                    out.append(CoverChange("alert", post.id, rule.id, due, start_or_none,
                                           int(self._lapse_min[r])))
        out.sort(key=_change_order)
        return out

    def _record(
        self, u_rule: I64, u_time: I64, u_count: I64, u_active: BOOL, deficit: BOOL,
        u_first: BOOL,
    ) -> None:
        state = np.where(~u_active, 0, np.where(deficit, 2, 1))
        names = ("inactive", "covered", "lapsed")
        for k in range(len(u_rule)):
            tl = self._stats[int(u_rule[k])].timeline
            s = names[int(state[k])]
            c = int(u_count[k])
            if tl and tl[-1].state == s and tl[-1].count == c:
                continue
            tl.append(TimelinePoint(int(u_time[k]), s, c))
