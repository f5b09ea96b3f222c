"""A deliberately simple brute-force reference evaluator of the cover semantics.

It exists only to check the engine. It is slow on purpose: the state of the
site can only change at an event time or when a fix goes stale (``f.t +
stale``), so it lists those critical times in the window and, at each one,
rebuilds the whole state from scratch by replaying every event at or before
it. Lapses, alerts and totals are then read off that sequence of states.

Reach rules (``reach_s``) use :func:`brute_travel`: for every query it snaps
the position to every walkway segment and runs a heapq Dijkstra over the
walkway graph, with no precomputed distance fields. Only the graph itself
(vertices, segments, access vertices and legs) comes from
``coverwatch.planning.network.build_network``.

Events are :class:`Fix` (below) and the domain's ``DutyEvent``, ``GateEvent``
and ``FlagEvent``. :func:`to_batch` turns such a list into the engine's
``EventBatch`` (fix officers must then be ints).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np

from coverwatch.domain.events import DutyEvent, EventBatch, FixColumns, FlagEvent, GateEvent
from coverwatch.domain.site import Post, Rule, Site
from coverwatch.domain.time import seconds_to_us
from coverwatch.engine.results import Lapse, RuleStats, TimelinePoint
from coverwatch.planning.network import WalkwayNetwork, build_network

__all__ = [
    "Event",
    "Fix",
    "ReferenceResult",
    "RuleState",
    "brute_travel",
    "evaluate_reference",
    "membership_end",
    "signed_distance",
    "sort_events",
    "to_batch",
]


@dataclass(frozen=True, slots=True)
class Fix:
    """One position fix of an officer, in site metres.

    ``growth`` (m/s) makes the accuracy grow after the fix, as for a scan of a
    checkpoint: ``accuracy + growth * (t' - t)`` at a later time t'.
    """

    t: int
    officer: Hashable
    x: float
    y: float
    accuracy: float = 0.0
    seq: int = 0
    growth: float = 0.0


Event: TypeAlias = Fix | DutyEvent | GateEvent | FlagEvent


@dataclass(frozen=True, slots=True)
class RuleState:
    """One rule at one critical time: whether it is active and how many count."""

    t: int
    active: bool
    count: int


@dataclass(slots=True)
class ReferenceResult:
    """Lapses sorted by (start, post, rule), totals in ``site.rules()`` order."""

    lapses: list[Lapse]
    stats: list[RuleStats]
    window: tuple[int, int] | None
    states: dict[tuple[str, str], list[RuleState]] = field(default_factory=dict)


def signed_distance(post: Post, x: float, y: float) -> float:
    """Distance to a point post; for an area, minus the boundary distance inside.

    Mirrors ``coverwatch.domain.geometry.signed_distance`` operation by
    operation, so results agree bit for bit.
    """
    if post.at is not None:
        dx = x - post.at[0]
        dy = y - post.at[1]
        return math.sqrt(dx * dx + dy * dy)
    assert post.area is not None
    best = math.inf
    inside = False
    n = len(post.area)
    for i in range(n):
        ax, ay = post.area[i]
        bx, by = post.area[(i + 1) % n]
        ex = bx - ax
        ey = by - ay
        len2 = ex * ex + ey * ey
        px = x - ax
        py = y - ay
        u = min(max((px * ex + py * ey) / len2, 0.0), 1.0) if len2 > 0 else 0.0
        qx = px - u * ex
        qy = py - u * ey
        best = min(best, math.sqrt(qx * qx + qy * qy))
        if (ay > y) != (by > y):
            x_cross = ax + (y - ay) * ex / ey
            if x < x_cross:
                inside = not inside
    return -best if inside else best


def brute_travel(net: WalkwayNetwork, post: str, x: float, y: float) -> float:
    """Travel distance (snap + path, metres) from (x, y) to ``post``, by brute force.

    Exactly docs/semantics.md ("Reach"): snap to every segment and keep all the
    tied nearest ones; ``D`` is a heapq Dijkstra from the post's access vertex
    over the reversed edges, started at the leg, so sums are formed in the same
    order as the documented ``D(u) = D(v) + length``. Run afresh for each query.
    """
    if post not in net.access:
        return math.inf
    best = math.inf
    tied: list[tuple[int, float, float]] = []
    for s in range(net.n_segments):
        a, b = int(net.seg_a[s]), int(net.seg_b[s])
        ax, ay = float(net.node_x[a]), float(net.node_y[a])
        ex, ey = float(net.node_x[b]) - ax, float(net.node_y[b]) - ay
        len2 = ex * ex + ey * ey
        px, py = x - ax, y - ay
        u = min(max((px * ex + py * ey) / len2, 0.0), 1.0)
        qx, qy = px - u * ex, py - u * ey
        snap = math.sqrt(qx * qx + qy * qy)
        length = float(net.seg_len[s])
        to_a = u * length
        if snap < best:
            best, tied = snap, []
        if snap == best:
            tied.append((s, to_a, length - to_a))
    # D(v): distance from v to the access vertex plus the leg.
    dist: dict[int, float] = {}
    heap = [(net.leg[post], net.access[post])]
    edges = net.edges()
    while heap:
        d, v = heapq.heappop(heap)
        if v in dist:
            continue
        dist[v] = d
        for u2, v2, w in edges:
            if v2 == v and u2 not in dist:
                heapq.heappush(heap, (d + w, u2))
    path = math.inf
    for s, to_a, to_b in tied:
        a, b = int(net.seg_a[s]), int(net.seg_b[s])
        if net.seg_bwd[s] and a in dist:  # walk from the snap point back to a
            path = min(path, to_a + dist[a])
        if net.seg_fwd[s] and b in dist:
            path = min(path, to_b + dist[b])
    return best + path


def sort_events(events: Sequence[Event]) -> list[Event]:
    """Stable sort by (t, seq): ties keep their input order."""
    return sorted(events, key=lambda e: (e.t, e.seq))


#: Travel distance (metres) from a fix's position to a post: (post id, x, y) -> m.
Travel: TypeAlias = Callable[[str, float, float], float]


def membership_end(
    site: Site, post: Post, rule: Rule, f: Fix, stale_us: int, travel: Travel
) -> int | None:
    """When the fix's membership of the rule ends as its accuracy grows (exclusive).

    docs/semantics.md: the fix holds while ``growth * (t' - t) <= room``, to the
    whole microsecond, where room is ``release_m - (sd + accuracy)`` and, for a
    reach rule, at most ``reach_s * speed - (travel + accuracy)``. None: never.
    """
    if f.growth <= 0:
        return None
    room = rule.release_m - (signed_distance(post, f.x, f.y) + f.accuracy)
    if rule.reach_s is not None:
        speed = site.speed_for(rule.capability)
        room = min(room, rule.reach_s * speed - (travel(post.id, f.x, f.y) + f.accuracy))
    steps = 1e6 * max(room, 0.0) / f.growth
    return f.t + 1 + (stale_us if steps >= stale_us else math.floor(steps))


def _is_in(
    site: Site, post: Post, rule: Rule, fixes: list[Fix], stale_us: int, travel: Travel
) -> tuple[bool, int | None]:
    """Membership after the last of ``fixes`` (one officer, in applied order), and its end."""
    member = False
    prev_t: int | None = None
    end: int | None = None
    for f in fixes:
        if prev_t is not None and f.t >= prev_t + stale_us:
            member = False  # the previous fix was stale: forget its membership
        if end is not None and f.t >= end:
            member = False  # the previous scan's grown accuracy had put it out
        d = signed_distance(post, f.x, f.y) + f.accuracy
        reach_ok = True
        if rule.reach_s is not None:
            travel_s = (travel(post.id, f.x, f.y) + f.accuracy) / site.speed_for(rule.capability)
            reach_ok = travel_s <= rule.reach_s
        if d <= rule.within_m and reach_ok:
            member = True
        elif d > rule.release_m or not reach_ok:
            member = False
        prev_t = f.t
        end = membership_end(site, post, rule, f, stale_us, travel)
    return member, end


def _state_at(
    site: Site, events: list[Event], t: int, stale_us: int, travel: Travel
) -> list[RuleState]:
    """Every rule's state at ``t``, from scratch, after all events at or before ``t``."""
    applied = [e for e in events if e.t <= t]
    duty: dict[Hashable, DutyEvent] = {}
    flags = dict(site.flags)
    gates = dict.fromkeys(site.gates, False)
    fixes: dict[Hashable, list[Fix]] = {}
    for e in applied:
        if isinstance(e, Fix):
            fixes.setdefault(e.officer, []).append(e)
        elif isinstance(e, DutyEvent):
            duty[e.officer] = e
        elif isinstance(e, GateEvent):
            gates[e.post] = e.open
        else:
            flags[e.flag] = e.on
    states: list[RuleState] = []
    for post, rule in site.rules():
        active = True
        if rule.when is not None and not flags[rule.when]:
            active = False
        if rule.when_gate_open and not gates[post.id]:
            active = False
        count = 0
        for officer, own in fixes.items():
            d = duty.get(officer)
            if d is None or not d.on:
                continue
            if rule.capability is not None and rule.capability not in d.capabilities:
                continue
            latest = own[-1]
            if not (latest.t <= t < latest.t + stale_us):
                continue
            member, end = _is_in(site, post, rule, own, stale_us, travel)
            if member and (end is None or t < end):
                count += 1
        states.append(RuleState(t, active, count))
    return states


def evaluate_reference(
    site: Site, events: Sequence[Event], end: int | None = None
) -> ReferenceResult:
    """Lapses and totals over the window [first event t, end]; see the module docstring."""
    stale_us = seconds_to_us(site.stale_after_s)
    kept = sort_events([e for e in events if end is None or e.t <= end])
    rules = site.rules()
    empty_stats = [RuleStats(post.id, rule.id, rule.need) for post, rule in rules]
    if not kept:
        return ReferenceResult([], empty_stats, None)
    w0 = kept[0].t
    w1 = kept[-1].t if end is None else end
    critical = {w0, w1}
    for e in kept:
        critical.add(e.t)
        if isinstance(e, Fix) and e.t + stale_us <= w1:
            critical.add(e.t + stale_us)
    net = build_network(site) if any(r.reach_s is not None for _, r in rules) else None
    memo: dict[tuple[str, float, float], float] = {}

    def travel(post_id: str, x: float, y: float) -> float:
        # Memoised only because the same fix is replayed at every later critical time.
        key = (post_id, x, y)
        if key not in memo:
            assert net is not None
            memo[key] = brute_travel(net, post_id, x, y)
        return memo[key]

    # A growing fix can also stop counting when its grown accuracy puts it out.
    for e in kept:
        if isinstance(e, Fix) and e.growth > 0:
            for post, rule in rules:
                ends = membership_end(site, post, rule, e, stale_us, travel)
                if ends is not None and ends <= w1:
                    critical.add(ends)
    times = sorted(critical)

    per_time = [_state_at(site, kept, t, stale_us, travel) for t in times]

    lapses: list[Lapse] = []
    stats: list[RuleStats] = []
    states_by_rule: dict[tuple[str, str], list[RuleState]] = {}
    for k, (post, rule) in enumerate(rules):
        grace_us = seconds_to_us(rule.grace_s)
        seq = [row[k] for row in per_time]
        states_by_rule[(post.id, rule.id)] = seq
        st = RuleStats(post.id, rule.id, rule.need)
        # Intervals [times[i], times[i+1]); the last time is the window end instant.
        open_start: int | None = None
        open_min = 0
        rule_lapses: list[Lapse] = []
        last: tuple[str, int] | None = None
        for i, s in enumerate(seq):
            lapsed = s.active and s.count < rule.need
            if i + 1 < len(seq):
                span = times[i + 1] - s.t
                if s.active:
                    st.active_us += span
                    if not lapsed:
                        st.covered_us += span
            state = "inactive" if not s.active else ("lapsed" if lapsed else "covered")
            if last != (state, s.count):
                st.timeline.append(TimelinePoint(s.t, state, s.count))
                last = (state, s.count)
            if lapsed:
                if open_start is None:
                    open_start, open_min = s.t, s.count
                else:
                    open_min = min(open_min, s.count)
            elif open_start is not None:
                alert = open_start + grace_us if open_start + grace_us < s.t else None
                rule_lapses.append(Lapse(post.id, rule.id, open_start, s.t, alert, open_min))
                open_start = None
        if open_start is not None:
            alert = open_start + grace_us if open_start + grace_us <= w1 else None
            rule_lapses.append(Lapse(post.id, rule.id, open_start, None, alert, open_min))
        for lapse in rule_lapses:
            st.lapses += 1
            st.alerts += lapse.alert_at is not None
            length = (w1 if lapse.end is None else lapse.end) - lapse.start
            st.longest_lapse_us = max(st.longest_lapse_us, length)
        lapses.extend(rule_lapses)
        stats.append(st)
    lapses.sort(key=lambda lp: (lp.start, lp.post, lp.rule))
    return ReferenceResult(lapses, stats, (w0, w1), states_by_rule)


def to_batch(events: Sequence[Event]) -> EventBatch:
    """The engine's input for these events, in the same order (fix officers must be ints)."""
    rows: list[tuple[int, int, float, float, float, int]] = []
    growth: list[float] = []
    control: list[DutyEvent | GateEvent | FlagEvent] = []
    for e in events:
        if isinstance(e, Fix):
            assert isinstance(e.officer, int), "the engine needs integer officers"
            rows.append((e.t, e.officer, float(e.x), float(e.y), float(e.accuracy), e.seq))
            growth.append(float(e.growth))
        else:
            control.append(e)
    cols = FixColumns.from_rows(rows)
    if rows:
        cols = FixColumns(cols.t, cols.officer, cols.x, cols.y, cols.accuracy, cols.seq,
                          np.asarray(growth, np.float64))
    return EventBatch(cols, control)
