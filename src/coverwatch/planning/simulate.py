"""Plans and their simulation: a roster of officers who hold posts or walk
patrols, turned into the fixes and duty events the cover engine reads.

A patrol is a route of waypoints walked at a steady speed, pausing ``dwell_s``
at each waypoint; it loops (back to the first waypoint) or stops at the last.
With ``along_walkways`` each leg follows the shortest walkway path between the
waypoints' nearest walkway points. Positions are piecewise linear in time, so
a whole shift is one ``np.interp`` per officer.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from coverwatch.domain.events import DutyEvent, EventBatch, FixColumns, FlagEvent, GateEvent
from coverwatch.domain.time import US_PER_S
from coverwatch.planning.network import ReachField

__all__ = [
    "OfficerPlan",
    "Patrol",
    "Plan",
    "Simulation",
    "patrol_knots",
    "simulate",
    "to_events",
    "walkway_path",
]

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]
Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Patrol:
    """A route walked at ``speed_mps``; ``dwell_s`` per waypoint (one value or one each).

    ``start_offset_s`` is how far into the route the officer is at the start of
    their shift; ``None`` means a random offset drawn with the plan's seed.
    """

    route: tuple[Point, ...]
    speed_mps: float
    dwell_s: tuple[float, ...] = (0.0,)
    loop: bool = True
    start_offset_s: float | None = 0.0
    along_walkways: bool = True


@dataclass(frozen=True, slots=True)
class OfficerPlan:
    """One officer on the roster: a fixed position (``hold``) or a ``patrol``.

    ``shift`` is (on, off) in microseconds; ``post`` names the post held, for reports.
    """

    id: str
    capabilities: frozenset[str]
    shift: tuple[int, int]
    hold: Point | None = None
    patrol: Patrol | None = None
    post: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A roster over a shift [start, end] (microseconds), with the site's
    conditions during it: flag values and which gates are open."""

    id: str
    start: int
    end: int
    officers: tuple[OfficerPlan, ...]
    flags: dict[str, bool] = field(default_factory=dict)
    gates_open: tuple[str, ...] = ()
    accuracy_m: float = 0.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Simulation:
    """Simulated positions: row i is officer i of the plan, column k is time
    ``start + k * step_us``. ``on`` says whether they are on shift then.
    ``routes`` holds each patrol's walked polyline (for pictures)."""

    start: int
    step_us: int
    x: F64
    y: F64
    on: BOOL
    routes: list[list[Point]]

    @property
    def n_steps(self) -> int:
        return int(self.x.shape[1])

    def times(self) -> npt.NDArray[np.int64]:
        return self.start + np.arange(self.n_steps, dtype=np.int64) * self.step_us

    def index_at(self, t: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Column of the latest simulated fix at or before each time."""
        k = (t - self.start) // self.step_us
        return np.clip(k, 0, self.n_steps - 1).astype(np.int64)


def walkway_path(field_: ReachField, p: Point, q: Point) -> list[Point]:
    """The walkway route from p to q: p, its nearest walkway point, the vertices
    of the shortest path, q's nearest walkway point, q. Straight if none."""
    net = field_.net
    xs = np.array([p[0], q[0]])
    ys = np.array([p[1], q[1]])
    pi, seg, _snap, to_a, to_b = field_.nearest(xs, ys)
    if net.n_segments == 0 or 0 not in pi or 1 not in pi:
        return [p, q]
    sp = int(np.flatnonzero(pi == 0)[0])
    sq = int(np.flatnonzero(pi == 1)[0])
    s0, s1 = int(seg[sp]), int(seg[sq])

    def on_seg(s: int, along_a: float) -> Point:
        a, b = int(net.seg_a[s]), int(net.seg_b[s])
        f = along_a / float(net.seg_len[s])
        return (float(net.node_x[a] + f * (net.node_x[b] - net.node_x[a])),
                float(net.node_y[a] + f * (net.node_y[b] - net.node_y[a])))

    p_on = on_seg(s0, float(to_a[sp]))
    q_on = on_seg(s1, float(to_a[sq]))
    if s0 == s1:
        return [p, p_on, q_on, q]
    # Dijkstra from p's snap point with predecessors.
    outgoing: list[list[tuple[int, float]]] = [[] for _ in range(net.n_nodes)]
    for u, v, w in net.edges():
        outgoing[u].append((v, w))
    dist = [math.inf] * net.n_nodes
    prev = [-1] * net.n_nodes
    heap: list[tuple[float, int]] = []
    a0, b0 = int(net.seg_a[s0]), int(net.seg_b[s0])
    if net.seg_bwd[s0]:
        dist[a0] = float(to_a[sp])
        heap.append((dist[a0], a0))
    if net.seg_fwd[s0] and float(to_b[sp]) < dist[b0]:
        dist[b0] = float(to_b[sp])
        heap.append((dist[b0], b0))
    heapq.heapify(heap)
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v, w in outgoing[u]:
            if d + w < dist[v]:
                dist[v] = d + w
                prev[v] = u
                heapq.heappush(heap, (d + w, v))
    a1, b1 = int(net.seg_a[s1]), int(net.seg_b[s1])
    options = []
    if net.seg_fwd[s1]:
        options.append((dist[a1] + float(to_a[sq]), a1))
    if net.seg_bwd[s1]:
        options.append((dist[b1] + float(to_b[sq]), b1))
    best = min(options, default=(math.inf, -1))
    if not math.isfinite(best[0]):
        return [p, q]
    chain = []
    v = best[1]
    while v != -1:
        chain.append((float(net.node_x[v]), float(net.node_y[v])))
        v = prev[v]
    return [p, p_on, *reversed(chain), q_on, q]


def patrol_knots(route: Sequence[Point], legs: Sequence[Sequence[Point]], patrol: Patrol,
                 ) -> tuple[F64, F64, F64, float]:
    """Time knots (s), x, y of one pass of the patrol, and its period (s).

    ``legs[i]`` is the polyline from waypoint i to the next one.
    """
    ts: list[float] = [0.0]
    xs: list[float] = [route[0][0]]
    ys: list[float] = [route[0][1]]
    t = 0.0
    n = len(route)
    for i, leg in enumerate(legs):
        dwell = patrol.dwell_s[i % len(patrol.dwell_s)]
        if dwell > 0:
            t += dwell
            ts.append(t)
            xs.append(leg[0][0])
            ys.append(leg[0][1])
        for a, b in pairwise(leg):
            t += math.dist(a, b) / patrol.speed_mps
            ts.append(t)
            xs.append(b[0])
            ys.append(b[1])
    if not patrol.loop:
        dwell = patrol.dwell_s[(n - 1) % len(patrol.dwell_s)]
        t += dwell
    return np.asarray(ts), np.asarray(xs), np.asarray(ys), t


def simulate(plan: Plan, field_: ReachField | None, hz: float = 1.0) -> Simulation:
    """Positions of every officer at ``hz`` fixes per second over the plan's shift."""
    step_us = max(1, round(US_PER_S / hz))
    n_steps = (plan.end - plan.start) // step_us + 1
    times = plan.start + np.arange(n_steps, dtype=np.int64) * step_us
    n = len(plan.officers)
    x = np.zeros((n, n_steps))
    y = np.zeros((n, n_steps))
    on = np.zeros((n, n_steps), bool)
    rng = np.random.default_rng(plan.seed)
    routes: list[list[Point]] = []
    seconds = (times - plan.start) / US_PER_S
    for i, officer in enumerate(plan.officers):
        on[i] = (times >= officer.shift[0]) & (times < officer.shift[1])
        if officer.hold is not None or officer.patrol is None:
            hx, hy = officer.hold or (0.0, 0.0)
            x[i] = hx
            y[i] = hy
            routes.append([])
            continue
        patrol = officer.patrol
        route = list(patrol.route)
        stops = [*route, route[0]] if patrol.loop else route
        legs: list[list[Point]] = []
        for a, b in pairwise(stops):
            if patrol.along_walkways and field_ is not None:
                legs.append(walkway_path(field_, a, b))
            else:
                legs.append([a, b])
        kt, kx, ky, period = patrol_knots(route, legs, patrol)
        walked = [route[0]] + [pt for leg in legs for pt in leg[1:]]
        routes.append(walked)
        offset = patrol.start_offset_s
        if offset is None:
            offset = float(rng.uniform(0.0, period)) if period > 0 else 0.0
        tau = seconds - (officer.shift[0] - plan.start) / US_PER_S + offset
        if patrol.loop and period > 0:
            tau = np.mod(tau, period)
        x[i] = np.interp(tau, kt, kx)
        y[i] = np.interp(tau, kt, ky)
    return Simulation(plan.start, step_us, x, y, on, routes)


def to_events(plan: Plan, sim: Simulation) -> EventBatch:
    """The engine's input: conditions and duty at their times, fixes while on shift.

    Officer i of the plan is engine officer i. Fixes are sorted by (t, officer).
    """
    control: list[DutyEvent | GateEvent | FlagEvent] = []
    seq = 0
    for flag, value in sorted(plan.flags.items()):
        control.append(FlagEvent(plan.start, flag, value, seq))
        seq += 1
    for gate in plan.gates_open:
        control.append(GateEvent(plan.start, gate, True, seq))
        seq += 1
    for i, officer in enumerate(plan.officers):
        control.append(DutyEvent(officer.shift[0], i, True, officer.capabilities, seq))
        seq += 1
        if officer.shift[1] <= plan.end:
            control.append(DutyEvent(officer.shift[1], i, False, officer.capabilities, seq))
            seq += 1
    mask = sim.on.T  # (steps, officers): t-major order
    steps, who = np.nonzero(mask)
    t = sim.start + steps.astype(np.int64) * sim.step_us
    fixes = FixColumns(
        t,
        who.astype(np.int32),
        sim.x.T[mask],
        sim.y.T[mask],
        np.full(len(t), plan.accuracy_m),
        seq + np.arange(len(t), dtype=np.int64),
    )
    return EventBatch(fixes, sorted(control, key=lambda e: (e.t, e.seq)))

