"""The patrol game (planning.patrolgame) and its solver adapter (reports.patrols)."""

from __future__ import annotations

import numpy as np
import pytest

from coverwatch.planning.patrolgame import (
    GameSpec,
    PlanningError,
    Target,
    attacker_best,
    comb_sample,
    eraser_problem,
    fill_coverage,
    moment_cover,
)
from coverwatch.planning.simulate import Simulation
from coverwatch.reports.patrols import solve_coverage


def test_one_officer_equalises_the_attacker_over_the_targets_worth_attacking() -> None:
    # Zero penalties: at the optimum the attacker's payoff v(1 - c_t) is equal on
    # every covered target, and sum(c) = 1: k = 2 / (1/8 + 1/6 + 1/5).
    targets = (Target("a", (0, 0), 8), Target("b", (1, 0), 6), Target("c", (2, 0), 5),
               Target("d", (3, 0), 1))
    cover = solve_coverage(GameSpec(targets), 1, [False] * 4)
    k = 2 / (1 / 8 + 1 / 6 + 1 / 5)
    assert cover[:3] == pytest.approx([1 - k / 8, 1 - k / 6, 1 - k / 5], abs=1e-6)
    assert cover[3] == pytest.approx(0, abs=1e-6)
    assert attacker_best(targets, cover)[0] == pytest.approx(k, abs=1e-6)


def test_penalties_and_held_targets() -> None:
    targets = (Target("a", (0, 0), 10, penalty=10), Target("b", (1, 0), 4),
               Target("held", (2, 0), 100))
    cover = solve_coverage(GameSpec(targets), 1, [False, False, True])
    # The held target is covered without spending the officer.
    assert cover[2] == 1.0
    assert cover[0] + cover[1] == pytest.approx(1.0, abs=1e-6)
    # a: 10 - 20 c_a; b: 4 (1 - c_b) = 4 c_a  ->  c_a = 10 / 24
    assert cover[0] == pytest.approx(10 / 24, abs=1e-6)
    payoff, where = attacker_best(targets, cover)
    assert payoff == pytest.approx(4 * 10 / 24, abs=1e-6)
    assert where in ("a", "b")


def test_idle_officers_are_spent_and_no_target_is_an_error() -> None:
    targets = (Target("a", (0, 0), 5), Target("b", (1, 0), 5))
    assert list(solve_coverage(GameSpec(targets), 3, [False, False])) == [1.0, 1.0]
    assert list(fill_coverage(np.array([0.2, 0.0]), 1, [False, False])) == \
        pytest.approx([0.2, 0.8])
    with pytest.raises(PlanningError):
        eraser_problem((), 1, [])


def test_comb_sampling_has_the_solved_marginals_and_distinct_targets() -> None:
    rng = np.random.default_rng(1)
    cover = np.array([0.7, 0.5, 0.8, 0.0, 1.0])
    counts = np.zeros(5)
    for _ in range(20_000):
        picks = comb_sample(cover, 3, rng)
        assert len(set(picks)) == 3
        counts[picks] += 1
    assert counts / 20_000 == pytest.approx(cover, abs=0.02)
    assert counts[3] == 0 and counts[4] == 20_000


def test_moment_cover_sees_an_officer_arriving_during_the_attack() -> None:
    # One officer at x = 100 until step 10, then at the target (x = 0).
    x = np.where(np.arange(20) < 10, 100.0, 0.0)[None, :]
    sim = Simulation(0, 1_000_000, x, np.zeros_like(x), np.ones_like(x, bool), [[]])
    cover = moment_cover(sim, [Target("t", (0, 0), 1, radius_m=5)], attack_s=3)
    # An attack starting at step k is seen if the officer is there by k + 3.
    assert cover[0].tolist() == [False] * 7 + [True] * 10
