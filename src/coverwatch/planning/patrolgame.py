"""Randomised patrols (pure core): a Stackelberg security game over a site's
patrol targets, and concrete patrol days sampled from its solution.

The defender (the officers free to patrol) commits to a mixed strategy, a
coverage probability per target; the attacker watches the routine, then picks
the target with the best expected payoff for them. The defender's optimal
commitment is the standard ERASER mixed-integer programme (Kiekintveld et al.
2009, after DOBSS): :func:`eraser_problem` builds it as plain arrays, and an
adapter hands them to a solver (SciPy's ``milp``); nothing here solves or does I/O.

A day is cut into slots of ``slot_s`` seconds; in each slot every free officer
walks to one target and stays there, the set of targets drawn with exactly the
solved marginals (:func:`comb_sample`, systematic sampling over a shuffled
order), so which target sees an officer when cannot be predicted. Payoffs use
one convention throughout: the attacker gains ``value`` at an uncovered target
and loses ``penalty`` at a covered one; the defender loses ``value`` at an
uncovered target and loses nothing at a covered one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from coverwatch.errors import CoverwatchError
from coverwatch.planning.network import ReachField
from coverwatch.planning.simulate import OfficerPlan, Patrol, Plan, Simulation, walkway_path

__all__ = [
    "GameSpec",
    "MilpArrays",
    "PatrolDay",
    "PlanningError",
    "Target",
    "attacker_best",
    "comb_sample",
    "eraser_problem",
    "fill_coverage",
    "moment_cover",
    "observed_payoff",
    "resolve_offsets",
    "sample_day",
    "travel_times",
]

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]
Point = tuple[float, float]


class PlanningError(CoverwatchError, ValueError):
    """The game cannot be set up for this plan (a message for people)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A patrol area: covered while an officer is within ``radius_m`` of ``at``."""

    id: str
    at: Point
    value: float
    penalty: float = 0.0
    radius_m: float = 20.0

    def attacker(self, cover: float | F64) -> float | F64:
        """The attacker's expected payoff at coverage ``cover``."""
        return cover * -self.penalty + (1 - cover) * self.value


@dataclass(frozen=True, slots=True)
class GameSpec:
    """The ``randomise`` and ``targets`` sections of a plan file.

    ``attack_s``: how long an attack at a target takes; it is caught if an
    officer is within the target's radius at some moment of it. ``officers``:
    who may be randomised (None: every patrolling officer no hard rule needs).
    """

    targets: tuple[Target, ...]
    slot_s: float = 600.0
    attack_s: float = 180.0
    officers: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MilpArrays:
    """``minimise c @ x`` s.t. ``a_ub @ x <= b_ub``, ``a_eq @ x == b_eq``,
    ``lower <= x <= upper``, ``integrality[i] == 1`` for integer variables.

    Variables: coverage c_1..c_n, attacker choice a_1..a_n (binary), the
    defender's value d, the attacker's value k.
    """

    c: F64
    a_ub: F64
    b_ub: F64
    a_eq: F64
    b_eq: F64
    lower: F64
    upper: F64
    integrality: npt.NDArray[np.int64]
    n: int

    def coverage(self, x: F64) -> F64:
        out: F64 = np.clip(np.asarray(x[: self.n], dtype=float), 0.0, 1.0)
        return out


def eraser_problem(targets: Sequence[Target], resources: int,
                   fixed: Sequence[bool]) -> MilpArrays:
    """The ERASER MILP for ``resources`` free officers; ``fixed[t]`` marks a
    target covered throughout by officers on fixed posts (coverage 1, no
    resource spent)."""
    n = len(targets)
    if n == 0:
        raise PlanningError("the game needs at least one target")
    nv = 2 * n + 2
    d_i, k_i = 2 * n, 2 * n + 1
    u_ac = np.array([-t.penalty for t in targets])
    u_au = np.array([t.value for t in targets])
    u_dc = np.zeros(n)
    u_du = np.array([-t.value for t in targets])
    big = 4.0 * float(max(np.abs(u_ac).max(), np.abs(u_au).max(), 1.0)) + 1.0
    rows: list[F64] = []
    rhs: list[float] = []
    row = np.zeros(nv)
    row[:n] = [0.0 if f else 1.0 for f in fixed]
    rows.append(row)
    rhs.append(float(resources))
    for t in range(n):
        # d <= U_d(c_t) when the attacker picks t
        row = np.zeros(nv)
        row[d_i] = 1.0
        row[t] = -(u_dc[t] - u_du[t])
        row[n + t] = big
        rows.append(row)
        rhs.append(big + u_du[t])
        # k >= U_a(c_t) for every t (k is the attacker's best payoff) ...
        row = np.zeros(nv)
        row[k_i] = -1.0
        row[t] = u_ac[t] - u_au[t]
        rows.append(row)
        rhs.append(-u_au[t])
        # ... and k <= U_a(c_t) for the target picked
        row = np.zeros(nv)
        row[k_i] = 1.0
        row[t] = -(u_ac[t] - u_au[t])
        row[n + t] = big
        rows.append(row)
        rhs.append(big + u_au[t])
    a_eq = np.zeros((1, nv))
    a_eq[0, n:2 * n] = 1.0
    c = np.zeros(nv)
    c[d_i] = -1.0  # maximise d
    lower = np.concatenate([np.array([1.0 if f else 0.0 for f in fixed]), np.zeros(n),
                            [-math.inf, -math.inf]])
    upper = np.concatenate([np.ones(2 * n), [math.inf, math.inf]])
    integrality = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64),
                                  np.zeros(2, np.int64)])
    return MilpArrays(c, np.asarray(rows), np.asarray(rhs), a_eq, np.ones(1), lower, upper,
                      integrality, n)


def fill_coverage(cover: F64, resources: int, fixed: Sequence[bool]) -> F64:
    """Spend resources the optimum left idle (more cover never helps the attacker):
    raise the lowest-covered free targets until ``resources`` are used or all are 1."""
    out = np.array(cover, dtype=float)
    free = [i for i in range(len(out)) if not fixed[i]]
    spare = resources - float(out[free].sum()) if free else 0.0
    for i in sorted(free, key=lambda j: out[j]):
        if spare <= 1e-9:
            break
        add = min(1.0 - out[i], spare)
        out[i] += add
        spare -= add
    return out


def attacker_best(targets: Sequence[Target], cover: Sequence[float] | F64,
                  ) -> tuple[float, str]:
    """The attacker's best expected payoff against per-target ``cover``, and where."""
    payoffs = [float(t.attacker(float(c))) for t, c in zip(targets, cover, strict=True)]
    best = int(np.argmax(payoffs))
    return payoffs[best], targets[best].id


def comb_sample(cover: F64, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` distinct targets with P(target i) = cover[i] (sum(cover) == k, each
    at most 1): systematic sampling over a randomly shuffled order."""
    order = rng.permutation(len(cover))
    edges = np.concatenate([[0.0], np.cumsum(cover[order])])
    u = float(rng.uniform(0.0, 1.0))
    picks: list[int] = []
    for j in range(k):
        hit = int(np.searchsorted(edges, u + j, side="right")) - 1
        hit = min(max(hit, 0), len(cover) - 1)
        if int(order[hit]) not in picks:
            picks.append(int(order[hit]))
    return picks


def travel_times(field: ReachField | None, points: Sequence[Point], speed_mps: float,
                 along_walkways: bool) -> F64:
    """Walking time (s) between every pair of points, along walkways if asked."""
    n = len(points)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if along_walkways and field is not None:
                path = walkway_path(field, points[i], points[j])
            else:
                path = [points[i], points[j]]
            length = sum(math.dist(a, b) for a, b in pairwise(path))
            out[i, j] = length / speed_mps
    return out


@dataclass(frozen=True, slots=True)
class PatrolDay:
    """One sampled day: the plan, and per free officer the target of each slot."""

    plan: Plan
    slots: dict[str, list[str]]
    slot_s: float


def resolve_offsets(plan: Plan, periods: Sequence[float]) -> Plan:
    """The plan with every random patrol start drawn as ``simulate`` draws it
    (same seed, same order), so removing or replacing officers moves no one else.
    ``periods[i]`` is officer i's patrol period (s)."""
    rng = np.random.default_rng(plan.seed)
    officers = []
    for officer, period in zip(plan.officers, periods, strict=True):
        patrol = officer.patrol
        if officer.hold is None and patrol is not None and patrol.start_offset_s is None:
            offset = float(rng.uniform(0.0, period)) if period > 0 else 0.0
            officer = replace(officer, patrol=replace(patrol, start_offset_s=offset))
        officers.append(officer)
    return replace(plan, officers=tuple(officers))


def sample_day(plan: Plan, spec: GameSpec, cover: F64, free: Sequence[str],
               travel: dict[str, F64], rng: np.random.Generator) -> PatrolDay:
    """Replace each free officer's patrol with one sampled day: per slot, the
    free officers go to distinct targets drawn with marginals ``cover``.

    ``travel[officer]`` is that officer's target-to-target walking time (s).
    An officer already at a drawn target stays on it (less walking, same odds).
    """
    targets = spec.targets
    by_id = {o.id: o for o in plan.officers}
    length_s = (plan.end - plan.start) / 1e6
    n_slots = max(1, math.ceil(length_s / spec.slot_s))
    where: dict[str, list[int]] = {o: [] for o in free}
    k = len(free)
    for _ in range(n_slots):
        picks = comb_sample(cover, min(k, round(float(cover.sum()))), rng)
        while len(picks) < k:  # more officers than coverage to spend: anywhere else
            rest = [i for i in range(len(targets)) if i not in picks] or list(range(len(targets)))
            picks.append(int(rng.choice(rest)))
        previous = {o: where[o][-1] for o in free if where[o]}
        todo = list(picks)
        unassigned = []
        for o in free:
            if o in previous and previous[o] in todo:
                where[o].append(previous[o])
                todo.remove(previous[o])
            else:
                unassigned.append(o)
        for o, t in zip(unassigned, rng.permutation(todo), strict=True):
            where[o].append(int(t))
    officers = []
    for officer in plan.officers:
        if officer.id not in where:
            officers.append(officer)
            continue
        officers.append(_day_officer(by_id[officer.id], where[officer.id], targets,
                                     travel[officer.id], spec.slot_s))
    slots = {o: [targets[i].id for i in where[o]] for o in free}
    return PatrolDay(replace(plan, officers=tuple(officers)), slots, spec.slot_s)


def _day_officer(officer: OfficerPlan, visits: list[int], targets: Sequence[Target],
                 travel: F64, slot_s: float) -> OfficerPlan:
    """Waypoints where the target changes; dwell so each walk starts on a slot boundary."""
    stops: list[tuple[int, float]] = []  # (target, slot start s)
    for s, t in enumerate(visits):
        if not stops or stops[-1][0] != t:
            stops.append((t, s * slot_s))
    if len(stops) == 1:
        return replace(officer, hold=targets[stops[0][0]].at, patrol=None, post=None)
    assert officer.patrol is not None
    dwell: list[float] = []
    arrive = 0.0
    for (a, _), (b, leave) in pairwise(stops):
        dwell.append(max(0.0, leave - arrive))
        arrive = max(leave, arrive) + float(travel[a, b])
    dwell.append(0.0)
    patrol = Patrol(tuple(targets[t].at for t, _ in stops), officer.patrol.speed_mps,
                    tuple(dwell), False, 0.0, officer.patrol.along_walkways)
    return replace(officer, patrol=patrol, hold=None, post=None)


def moment_cover(sim: Simulation, targets: Sequence[Target], attack_s: float) -> BOOL:
    """(targets, moments): would an attack at target t starting at simulated
    moment k be seen, i.e. is an on-shift officer within the radius at some
    step of [k, k + attack_s]? Only attacks that end within the shift count."""
    steps = sim.n_steps
    window = max(0, round(attack_s * 1e6 / sim.step_us))
    starts = max(1, steps - window)
    out = np.zeros((len(targets), starts), bool)
    for i, t in enumerate(targets):
        near = ((np.hypot(sim.x - t.at[0], sim.y - t.at[1]) <= t.radius_m) & sim.on).any(axis=0)
        csum = np.concatenate([[0], np.cumsum(near, dtype=np.int64)])
        hi = np.minimum(np.arange(starts) + window + 1, steps)
        out[i] = (csum[hi] - csum[np.arange(starts)]) > 0
    return out


def observed_payoff(targets: Sequence[Target], covers: Sequence[BOOL],
                    ) -> tuple[float, str, F64]:
    """The attacker's best expected payoff against days ``covers`` (from
    :func:`moment_cover`, same shape): they know the plan's odds and pick the
    target and moment where a day was most often uncovered. Also the worst
    moment's cover per target."""
    share = np.mean(np.stack([c.astype(float) for c in covers]), axis=0)
    worst = share.min(axis=1)
    payoff, where = attacker_best(targets, worst)
    return payoff, where, worst
