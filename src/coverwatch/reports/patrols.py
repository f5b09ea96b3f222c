"""Randomised patrol plans (adapter): solve the patrol game with SciPy's
``milp`` and sample patrol days that the plan checker passes.

The game's construction and the sampling are pure (coverwatch.planning.patrolgame);
this module adds the solver call and the cover engine (through
:func:`coverwatch.reports.plans.check_plan`), which decides which patrolling
officers a hard cover rule needs (they keep their routes) and checks every
sampled day: a day with any predicted alert is never handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from coverwatch.planning.network import ReachField
from coverwatch.planning.patrolgame import (
    F64,
    GameSpec,
    PatrolDay,
    PlanningError,
    attacker_best,
    eraser_problem,
    fill_coverage,
    moment_cover,
    observed_payoff,
    resolve_offsets,
    sample_day,
    travel_times,
)
from coverwatch.planning.simulate import Plan, patrol_knots, simulate, walkway_path
from coverwatch.reports.plans import PlanCheck, check_plan, response_field

__all__ = ["MAX_ATTEMPTS", "Randomised", "randomise_plan", "solve_coverage"]

#: Sampled days tried (and checked) before giving up on a seed.
MAX_ATTEMPTS = 20


@dataclass(slots=True)
class Randomised:
    """What `coverwatch plan randomise` reports."""

    spec: GameSpec
    free: list[str]
    tied: list[str]
    fixed: list[bool]               # per target: covered all shift by officers not randomised
    coverage: F64                   # per target: the solved coverage probability
    game_payoff: float              # attacker's best expected payoff, by the game's solution
    game_target: str
    fixed_payoff: float             # ... against the fixed-route plan (observed)
    fixed_target: str
    fixed_cover: F64                # per target: worst-moment cover of the fixed-route plan
    sampled_payoff: float           # ... against the randomised plan over sampled days
    sampled_target: str
    sampled_cover: F64              # per target: worst-moment share of sampled days covered
    days: int
    day: PatrolDay                  # the day of the seed, which passed the plan check
    check: PlanCheck                # that day's plan check
    attempts: int


def solve_coverage(spec: GameSpec, resources: int, fixed: list[bool]) -> F64:
    """The defender's optimal coverage per target (ERASER, solved by ``milp``)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    prob = eraser_problem(spec.targets, resources, fixed)
    result = milp(prob.c, integrality=prob.integrality, bounds=Bounds(prob.lower, prob.upper),
                  constraints=[LinearConstraint(prob.a_ub, -np.inf, prob.b_ub),
                               LinearConstraint(prob.a_eq, prob.b_eq, prob.b_eq)])
    if not result.success or result.x is None:
        raise PlanningError(f"the patrol game could not be solved: {result.message}")
    return fill_coverage(prob.coverage(result.x), resources, fixed)


def _periods(plan: Plan, field: ReachField | None) -> list[float]:
    out = []
    for officer in plan.officers:
        patrol = officer.patrol
        if officer.hold is not None or patrol is None:
            out.append(0.0)
            continue
        route = list(patrol.route)
        stops = [*route, route[0]] if patrol.loop else route
        legs = [walkway_path(field, a, b) if patrol.along_walkways and field is not None
                else [a, b] for a, b in pairwise(stops)]
        out.append(patrol_knots(route, legs, patrol)[3])
    return out


def _without(plan: Plan, names: set[str]) -> Plan:
    return replace(plan, officers=tuple(o for o in plan.officers if o.id not in names))


def _alerts(site: object, plan: Plan, hz: float) -> int:
    if not plan.officers:
        # Nobody on duty: every active rule lapses; the engine needs no run to say so.
        return 1
    return check_plan(site, plan, hz=hz, samples=0, timeline=False).alerts  # type: ignore[arg-type]


def randomise_plan(site: object, plan: Plan, spec: GameSpec, *, seed: int, days: int = 50,
                   hz: float = 1.0) -> Randomised:
    """Solve the game for ``plan`` on ``site`` and sample the day of ``seed``
    (checked), with the attacker's payoff estimated over ``days`` sampled days."""
    from coverwatch.domain.site import Site

    assert isinstance(site, Site)
    field = response_field(site)
    base = resolve_offsets(plan, _periods(plan, field))
    if _alerts(site, base, hz):
        raise PlanningError(f"plan {plan.id} itself predicts alerts: fix it first "
                            "(coverwatch plan check) before randomising its patrols")
    patrollers = [o.id for o in base.officers if o.patrol is not None and o.hold is None]
    if spec.officers is not None:
        for name in spec.officers:
            if name not in patrollers:
                raise PlanningError(f"randomise.officers: {name!r} holds a post; only "
                                    "patrolling officers are randomised")
        free = list(spec.officers)
        if _alerts(site, _without(base, set(free)), hz):
            raise PlanningError("randomise.officers: without their routes a hard cover rule "
                                "would alert; leave out the officers those rules need")
    else:
        # Greedy: an officer is free if the plan still passes without them (and the
        # ones already freed); extra officers only add cover, so a day passes too.
        free = []
        for name in patrollers:
            if not _alerts(site, _without(base, {*free, name}), hz):
                free.append(name)
    if not free:
        raise PlanningError("no officer is free to patrol: every patrolling officer is "
                            "needed by a hard cover rule (or none patrols)")
    tied = [o.id for o in base.officers if o.id not in free]
    targets = spec.targets
    tied_plan = _without(base, set(free))
    if tied_plan.officers:
        tied_cover = moment_cover(simulate(tied_plan, field, hz), targets, spec.attack_s)
        fixed = [bool(row.all()) for row in tied_cover]
    else:
        fixed = [False] * len(targets)
    travel: dict[str, F64] = {}
    points = [t.at for t in targets]
    for officer in base.officers:
        if officer.id in free:
            assert officer.patrol is not None
            travel[officer.id] = times = travel_times(field, points, officer.patrol.speed_mps,
                                                      officer.patrol.along_walkways)
            worst = float(times.max())
            if worst > min(spec.slot_s, spec.attack_s):
                i, j = np.unravel_index(int(times.argmax()), times.shape)
                raise PlanningError(
                    f"officer {officer.id} needs {worst:.0f} s from target {targets[i].id} to "
                    f"{targets[j].id}, longer than randomise.attack_s ({spec.attack_s:g} s) "
                    f"or slot_s ({spec.slot_s:g} s): a target drawn for a slot would not be "
                    "reached in time; lengthen them or move the targets closer")
    coverage = solve_coverage(spec, len(free), fixed)
    game_payoff, game_target = attacker_best(targets, coverage)
    free_cover = np.where(fixed, 0.0, coverage)

    fixed_covers = moment_cover(simulate(base, field, hz), targets, spec.attack_s)
    fixed_payoff, fixed_target, fixed_worst = observed_payoff(targets, [fixed_covers])

    sampled = []
    for d in range(days):
        day_rng = np.random.default_rng([seed, d])
        one = sample_day(base, spec, free_cover, free, travel, day_rng)
        sampled.append(moment_cover(simulate(one.plan, field, hz), targets, spec.attack_s))
    sampled_payoff, sampled_target, sampled_worst = observed_payoff(targets, sampled) \
        if sampled else (game_payoff, game_target, coverage)

    rng = np.random.default_rng(seed)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        day = sample_day(base, spec, free_cover, free, travel, rng)
        day_id = f"{plan.id}-random-{seed}"[:64].rstrip("-")
        day = replace(day, plan=replace(day.plan, id=day_id))
        check = check_plan(site, day.plan, hz=hz, samples=0)
        if not check.alerts:
            return Randomised(spec, free, tied, fixed, coverage, game_payoff, game_target,
                              fixed_payoff, fixed_target, fixed_worst, sampled_payoff,
                              sampled_target, sampled_worst, days, day, check, attempt)
    raise PlanningError(f"no sampled day of seed {seed} passed the plan check in "
                        f"{MAX_ATTEMPTS} attempts")
