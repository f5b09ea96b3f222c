"""One hand-written test per rule of the cover semantics, with exact lapses.

Each test runs against the brute-force reference evaluator and against the
engine (``coverwatch.engine.evaluate``), so both are held to the same contract.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from coverwatch.domain.events import DutyEvent, FlagEvent, GateEvent
from coverwatch.domain.geometry import signed_distance as domain_signed_distance
from coverwatch.domain.site import Post, Rule, Site
from coverwatch.domain.time import US_PER_S, seconds_to_us
from coverwatch.engine.results import Lapse, RuleStats
from reference import Event, Fix, evaluate_reference, signed_distance, to_batch

T0 = 1_700_000_000 * US_PER_S
ARMED = frozenset({"armed"})


def at(seconds: float) -> int:
    """Event time ``seconds`` after T0."""
    return int(T0 + seconds_to_us(seconds))


@dataclass
class Outcome:
    lapses: list[Lapse]
    stats: list[RuleStats]


Evaluator = Callable[[Site, Sequence[Event], int | None], Outcome]


def _run_reference(site: Site, events: Sequence[Event], end: int | None) -> Outcome:
    result = evaluate_reference(site, events, end)
    return Outcome(result.lapses, result.stats)


def _run_engine(site: Site, events: Sequence[Event], end: int | None) -> Outcome:
    from coverwatch.engine import evaluate

    result = evaluate(site, to_batch(events), end=end)
    return Outcome(list(result.lapses), list(result.stats))


@pytest.fixture(params=["reference", "engine"])
def evaluator(request: pytest.FixtureRequest) -> Evaluator:
    return _run_engine if request.param == "engine" else _run_reference


def run(
    evaluator: Evaluator, site: Site, events: Sequence[Event], end: int | None = None
) -> Outcome:
    return evaluator(site, events, end)


def numbered(*events: Event) -> list[Event]:
    """The events with ``seq`` set to their position (their input order)."""
    return [dataclasses.replace(e, seq=i) for i, e in enumerate(events)]


def rule(
    need: int = 1,
    within: float = 10.0,
    release: float | None = None,
    grace: float = 0.0,
    capability: str | None = None,
    when: str | None = None,
    when_gate_open: bool = False,
    rule_id: str = "r",
) -> Rule:
    return Rule(
        rule_id, need, within, within if release is None else release, grace,
        capability, when, when_gate_open,
    )


def point_site(
    *rules: Rule,
    stale: float = 30.0,
    flags: dict[str, bool] | None = None,
    gate: bool = False,
) -> Site:
    post = Post("p", "Post", rules or (rule(),), at=(0.0, 0.0), gate=gate)
    return Site("s", "Site", (post,), stale_after_s=stale, flags=flags or {})


def on(s: float, officer: int = 0, caps: frozenset[str] = frozenset()) -> DutyEvent:
    return DutyEvent(at(s), officer, True, caps)


def off(s: float, officer: int = 0) -> DutyEvent:
    return DutyEvent(at(s), officer, False)


def fix(s: float, x: float, y: float = 0.0, officer: int = 0, acc: float = 0.0) -> Fix:
    return Fix(at(s), officer, x, y, acc)


def lapse(
    start: float,
    end: float | None,
    alert: float | None,
    min_cover: int = 0,
    post: str = "p",
    rule_id: str = "r",
) -> Lapse:
    return Lapse(
        post, rule_id, at(start), None if end is None else at(end),
        None if alert is None else at(alert), min_cover,
    )


# Geometry ----------------------------------------------------------------

L_SHAPE = ((0.0, 0.0), (20.0, 0.0), (20.0, 10.0), (10.0, 10.0), (10.0, 20.0), (0.0, 20.0))


def test_reference_signed_distance_mirrors_domain_geometry() -> None:
    r = rule()
    posts = [Post("a", "A", (r,), area=L_SHAPE), Post("b", "B", (r,), at=(3.0, 4.0))]
    rnd = random.Random(7)
    points = [(float(x), float(y)) for x in range(-3, 24) for y in range(-3, 24)]
    points += [(rnd.uniform(-5, 25), rnd.uniform(-5, 25)) for _ in range(500)]
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    for post in posts:
        expected = domain_signed_distance(xs, ys, post.at, post.area)
        got = [signed_distance(post, x, y) for x, y in points]
        assert got == expected.tolist()
    assert signed_distance(posts[0], 5.0, 5.0) == -5.0
    assert signed_distance(posts[0], 15.0, 15.0) == 5.0
    assert signed_distance(posts[1], 0.0, 0.0) == 5.0


def test_point_membership_at_exact_radius(evaluator: Evaluator) -> None:
    site = point_site(rule(within=10.0))
    events = numbered(
        on(0),
        fix(0, 10.0),  # d == within: in
        fix(2, 10.5),  # out
        fix(4, 6.0, 8.0),  # 3-4-5: exactly 10, in again
    )
    out = run(evaluator, site, events)
    assert out.lapses == [lapse(2, 4, 2)]


def test_area_membership_negative_inside(evaluator: Evaluator) -> None:
    post = Post("p", "Yard", (rule(within=2.0),), area=L_SHAPE)
    site = Site("s", "Site", (post,))
    events = numbered(
        on(0),
        fix(0, 5.0, 5.0, acc=3.0),  # sd -5, d -2: in
        fix(2, 15.0, 15.0),  # in the notch of the L: sd +5, out
        fix(4, 15.0, 12.0),  # sd +2 == within: in
        fix(6, 1.0, 10.0, acc=3.0),  # sd -1, d 2: in
        fix(8, 2.0, 10.0, acc=4.5),  # sd -2, d 2.5: out
        fix(10, 10.0, 10.0),  # on the boundary, sd 0: in
    )
    out = run(evaluator, site, events)
    assert out.lapses == [lapse(2, 4, 2), lapse(8, 10, 8)]


def test_accuracy_margin(evaluator: Evaluator) -> None:
    site = point_site(rule(within=10.0))
    events = numbered(
        on(0),
        fix(0, 8.0, acc=2.0),  # d 10: in
        fix(1, 8.0, acc=3.0),  # d 11: out
        fix(3, 7.0, acc=3.0),  # d 10: in
    )
    assert run(evaluator, site, events).lapses == [lapse(1, 3, 1)]


def test_hysteresis_enter_keep_leave(evaluator: Evaluator) -> None:
    site = point_site(rule(within=5.0, release=10.0))
    events = numbered(
        on(0),
        fix(0, 7.0),  # in the band, previous membership out: out
        fix(1, 4.0),  # enter
        fix(2, 9.0),  # band: keep in
        fix(3, 10.0),  # d == release: still in
        fix(4, 10.5),  # leave
        fix(5, 7.0),  # band: stay out
        fix(6, 5.0),  # d == within: enter
    )
    assert run(evaluator, site, events).lapses == [lapse(0, 1, 0), lapse(4, 6, 4)]


def test_hysteresis_memory_forgotten_after_stale_previous_fix(evaluator: Evaluator) -> None:
    site = point_site(rule(within=5.0, release=10.0), stale=2.0)
    events = numbered(
        on(0),
        fix(0, 4.0),  # in
        fix(2, 7.0),  # band; the fix at 0 is stale at exactly 2: forgotten, out
        fix(3.5, 7.0),  # band, previous (2) fresh: keeps out
    )
    assert run(evaluator, site, events).lapses == [lapse(2, None, 2)]


def test_hysteresis_memory_kept_just_before_stale(evaluator: Evaluator) -> None:
    site = point_site(rule(within=5.0, release=10.0), stale=2.0)
    events = numbered(
        on(0),
        fix(0, 4.0),
        Fix(at(2) - 1, 0, 7.0, 0.0),  # one microsecond before stale: keeps in
        Fix(at(4) - 2, 0, 7.0, 0.0),  # also before the previous one goes stale
    )
    assert run(evaluator, site, events).lapses == []


def test_fix_goes_stale_exactly_at_t_plus_stale(evaluator: Evaluator) -> None:
    site = point_site(rule(), stale=2.0)
    events = numbered(on(0), fix(0, 1.0), off(1, officer=9))
    # Fresh on [0, 2): a window ending one microsecond earlier sees no lapse.
    assert run(evaluator, site, events, at(2) - 1).lapses == []
    # At exactly 0 + stale it no longer counts: a lapse starts at the window end.
    assert run(evaluator, site, events, at(2)).lapses == [lapse(2, None, 2)]
    assert run(evaluator, site, events, at(3)).lapses == [lapse(2, None, 2)]


def test_fix_renewed_at_stale_instant_leaves_no_gap(evaluator: Evaluator) -> None:
    site = point_site(rule(), stale=2.0)
    events = numbered(on(0), fix(0, 1.0), fix(2, 1.0), fix(4, 1.0))
    assert run(evaluator, site, events).lapses == []


def test_duty_off_stops_counting(evaluator: Evaluator) -> None:
    site = point_site(rule(grace=1.0))
    events = numbered(on(0), fix(0, 1.0), off(1), on(3), fix(4, 1.0))
    assert run(evaluator, site, events).lapses == [lapse(1, 3, 2)]


def test_no_duty_event_means_not_on_duty(evaluator: Evaluator) -> None:
    site = point_site(rule())
    events = numbered(fix(0, 1.0), fix(2, 1.0), on(3), fix(4, 1.0))
    assert run(evaluator, site, events).lapses == [lapse(0, 3, 0)]


def test_capability_filter_and_change_by_later_duty_event(evaluator: Evaluator) -> None:
    site = point_site(rule(capability="armed"))
    events = numbered(
        on(0),  # on duty without the capability
        fix(0, 1.0),
        on(2, caps=ARMED),  # same fix, now counts
        on(4, caps=frozenset({"medic"})),  # capability replaced: no longer counts
        fix(5, 1.0),
    )
    assert run(evaluator, site, events).lapses == [lapse(0, 2, 0), lapse(4, None, 4)]


def test_capability_only_counts_capable_officers(evaluator: Evaluator) -> None:
    site = point_site(rule(need=2, capability="armed"))
    events = numbered(
        on(0, 0, ARMED),
        on(0, 1, frozenset({"medic"})),
        on(0, 2, ARMED | {"medic"}),
        fix(0, 1.0, officer=0),
        fix(0, 1.0, officer=1),
        fix(2, 1.0, officer=2),
        fix(3, 1.0, officer=1),
    )
    assert run(evaluator, site, events).lapses == [lapse(0, 2, 0, min_cover=1)]


def test_flag_activity(evaluator: Evaluator) -> None:
    site = point_site(rule(when="open"), flags={"open": False})
    events = numbered(
        off(0),
        FlagEvent(at(1), "open", True),
        FlagEvent(at(3), "open", False),
        FlagEvent(at(4), "open", True),
        off(5),
    )
    assert run(evaluator, site, events).lapses == [lapse(1, 3, 1), lapse(4, None, 4)]


def test_flag_initial_value_from_site(evaluator: Evaluator) -> None:
    site = point_site(rule(when="open"), flags={"open": True})
    events = numbered(off(0), FlagEvent(at(2), "open", False), off(5))
    assert run(evaluator, site, events).lapses == [lapse(0, 2, 0)]


def test_gate_activity_gates_start_closed(evaluator: Evaluator) -> None:
    site = point_site(rule(when_gate_open=True), gate=True)
    events = numbered(
        off(0),
        GateEvent(at(1), "p", True),
        GateEvent(at(2), "p", False),
        GateEvent(at(4), "p", True),
        off(6),
    )
    out = run(evaluator, site, events)
    assert out.lapses == [lapse(1, 2, 1), lapse(4, None, 4)]


def test_flag_and_gate_both_required(evaluator: Evaluator) -> None:
    site = point_site(rule(when="open", when_gate_open=True), gate=True, flags={"open": False})
    events = numbered(
        off(0),
        GateEvent(at(1), "p", True),
        FlagEvent(at(2), "open", True),
        GateEvent(at(3), "p", False),
        off(4),
    )
    assert run(evaluator, site, events).lapses == [lapse(2, 3, 2)]


def test_leave_and_reenter_at_same_t_gives_no_lapse(evaluator: Evaluator) -> None:
    site = point_site(rule())
    events = numbered(
        on(0, 0),
        on(0, 1),
        fix(0, 1.0, officer=0),
        fix(2, 50.0, officer=0),  # one leaves as the other arrives
        fix(2, 1.0, officer=1),
        off(3, 1),  # off and on again at the same t: a zero-length state
        on(3, 1),
        fix(4, 1.0, officer=1),
    )
    assert run(evaluator, site, events).lapses == []
    # Arrival listed (and numbered) before the departure: the same.
    arrival_first = numbered(*events[:3], events[4], events[3], *events[5:])
    assert run(evaluator, site, arrival_first).lapses == []


def test_flag_toggled_at_same_t_never_activates(evaluator: Evaluator) -> None:
    site = point_site(rule(when="open"), flags={"open": False})
    events = numbered(
        off(0), FlagEvent(at(1), "open", True), FlagEvent(at(1), "open", False), off(2)
    )
    assert run(evaluator, site, events).lapses == []


def test_stale_and_renewed_by_other_officer_at_same_t(evaluator: Evaluator) -> None:
    site = point_site(rule(), stale=2.0)
    events = numbered(on(0, 0), on(0, 1), fix(0, 1.0, officer=0), fix(2, 1.0, officer=1), off(3, 7))
    assert run(evaluator, site, events).lapses == []


def test_same_officer_same_t_fixes_apply_in_seq_order(evaluator: Evaluator) -> None:
    site = point_site(rule())
    base = [on(0), fix(0, 1.0)]
    last_out = numbered(*base, fix(2, 1.0), fix(2, 50.0), fix(4, 50.0))
    assert run(evaluator, site, last_out).lapses == [lapse(2, None, 2)]
    last_in = numbered(*base, fix(2, 50.0), fix(2, 1.0), fix(4, 1.0))
    assert run(evaluator, site, last_in).lapses == []
    # seq decides, not the position in the list.
    swapped = [last_out[0], last_out[1], last_out[3], last_out[2], last_out[4]]
    assert run(evaluator, site, swapped).lapses == [lapse(2, None, 2)]


def test_same_t_fixes_hysteresis_uses_the_earlier_one(evaluator: Evaluator) -> None:
    site = point_site(rule(within=5.0, release=10.0))
    events = numbered(on(0), fix(0, 50.0), fix(2, 1.0), fix(2, 8.0), fix(4, 8.0))
    # At 2: in by the first fix, the second (band) keeps it in.
    assert run(evaluator, site, events).lapses == [lapse(0, 2, 0)]


def test_out_of_order_input_is_sorted(evaluator: Evaluator) -> None:
    site = point_site(rule(need=2, grace=0.5))
    events = numbered(
        on(0, 0),
        on(0, 1),
        fix(0, 1.0, officer=0),
        fix(0, 1.0, officer=1),
        fix(1, 20.0, officer=1),
        fix(2, 20.0, officer=0),
        fix(3, 1.0, officer=1),
        fix(3, 1.0, officer=0),
    )
    expected = [lapse(1, 3, 1.5, min_cover=0)]
    assert run(evaluator, site, events).lapses == expected
    shuffled = list(reversed(events))
    assert run(evaluator, site, shuffled).lapses == expected
    random.Random(3).shuffle(shuffled)
    assert run(evaluator, site, shuffled).lapses == expected


def test_alert_needs_start_plus_grace_before_end(evaluator: Evaluator) -> None:
    site = point_site(rule(grace=2.0))
    exactly = numbered(on(0), fix(0, 1.0), off(1), on(3), fix(5, 1.0))
    assert run(evaluator, site, exactly).lapses == [lapse(1, 3, None)]
    longer = numbered(on(0), fix(0, 1.0), off(1), DutyEvent(at(3) + 1, 0, True), fix(5, 1.0))
    assert run(evaluator, site, longer).lapses == [
        Lapse("p", "r", at(1), at(3) + 1, at(3), 0)
    ]


def test_open_lapse_alerted_when_grace_ends_at_window_end(evaluator: Evaluator) -> None:
    site = point_site(rule(grace=2.0))
    events = numbered(on(0), fix(0, 1.0), off(1), fix(3, 1.0))
    assert run(evaluator, site, events).lapses == [lapse(1, None, 3)]
    assert run(evaluator, site, events, at(3) - 1).lapses == [lapse(1, None, None)]


def test_lapse_starting_at_window_end(evaluator: Evaluator) -> None:
    site = point_site(rule(grace=0.0), rule(grace=1.0, rule_id="slow"))
    events = numbered(on(0), fix(0, 1.0), off(2))
    out = run(evaluator, site, events)
    assert out.lapses == [lapse(2, None, 2), lapse(2, None, None, rule_id="slow")]
    for stats in out.stats:
        assert (stats.active_us, stats.covered_us) == (at(2) - at(0), at(2) - at(0))


def test_min_cover_is_lowest_count_during_lapse(evaluator: Evaluator) -> None:
    site = point_site(rule(need=3))
    events = numbered(
        on(0, 0), on(0, 1), on(0, 2),
        fix(0, 1.0, officer=0), fix(0, 1.0, officer=1), fix(0, 1.0, officer=2),
        fix(1, 30.0, officer=2),  # 2
        fix(2, 30.0, officer=1),  # 1
        fix(3, 1.0, officer=1),  # 2
        fix(4, 1.0, officer=2),  # 3: covered
        fix(5, 30.0, officer=0),  # 2
        fix(6, 1.0, officer=0),  # 3 at the window end: closed
    )
    assert run(evaluator, site, events).lapses == [
        lapse(1, 4, 1, min_cover=1),
        lapse(5, 6, 5, min_cover=2),
    ]


def test_min_cover_of_open_lapse_includes_window_end_state(evaluator: Evaluator) -> None:
    site = point_site(rule(need=3))
    events = numbered(
        on(0, 0), on(0, 1), on(0, 2),
        fix(0, 1.0, officer=0), fix(0, 1.0, officer=1), fix(0, 1.0, officer=2),
        off(2, 2),  # 2
        off(3, 1),  # 1, at the window end
    )
    assert run(evaluator, site, events).lapses == [lapse(2, None, 2, min_cover=1)]


def test_window_starts_at_first_event(evaluator: Evaluator) -> None:
    site = point_site(rule(grace=1.0))
    events = numbered(off(5), fix(6, 1.0), off(8))
    out = run(evaluator, site, events)
    assert out.lapses == [lapse(5, None, 6)]
    (stats,) = out.stats
    assert stats.active_us == at(8) - at(5)
    assert stats.covered_us == 0


def test_explicit_end_beyond_last_event_officers_go_stale(evaluator: Evaluator) -> None:
    site = point_site(rule(), stale=2.0)
    events = numbered(on(0), fix(0, 1.0), fix(1, 1.0))
    out = run(evaluator, site, events, at(5))
    assert out.lapses == [lapse(3, None, 3)]
    (stats,) = out.stats
    assert (stats.active_us, stats.covered_us) == (at(5) - at(0), at(3) - at(0))
    assert (stats.lapses, stats.alerts, stats.longest_lapse_us) == (1, 1, at(5) - at(3))


def test_events_after_explicit_end_are_ignored(evaluator: Evaluator) -> None:
    site = point_site(rule(), stale=10.0)
    events = numbered(on(0), fix(0, 1.0), off(1), off(3), on(4))
    out = run(evaluator, site, events, at(2))
    assert out.lapses == [lapse(1, None, 1)]
    assert out.stats[0].active_us == at(2) - at(0)


def test_stats_totals(evaluator: Evaluator) -> None:
    site = point_site(rule(grace=1.5), rule(when="open", rule_id="w"), flags={"open": False})
    events = numbered(
        on(0),
        fix(0, 1.0),
        off(1),  # lapse 1-2 (1 s, no alert)
        on(2),
        FlagEvent(at(3), "open", True),
        off(4),  # lapse 4-8 (4 s, alert at 5.5) on r; 4-7 on w
        FlagEvent(at(7), "open", False),
        on(8),
        fix(9, 1.0),
    )
    out = run(evaluator, site, events)
    assert out.lapses == [
        lapse(1, 2, None),
        lapse(4, 8, 5.5),
        lapse(4, 7, 4, rule_id="w"),
    ]
    r, w = out.stats
    assert (r.post, r.rule, r.need) == ("p", "r", 1)
    assert (r.active_us, r.covered_us) == (at(9) - at(0), at(9) - at(0) - 5 * US_PER_S)
    assert (r.lapses, r.alerts, r.longest_lapse_us) == (2, 1, 4 * US_PER_S)
    assert (w.post, w.rule) == ("p", "w")
    assert (w.active_us, w.covered_us) == (4 * US_PER_S, 1 * US_PER_S)
    assert (w.lapses, w.alerts, w.longest_lapse_us) == (1, 1, 3 * US_PER_S)


def test_no_events_no_lapses(evaluator: Evaluator) -> None:
    site = point_site(rule())
    out = run(evaluator, site, [])
    assert out.lapses == []
    assert [(s.active_us, s.covered_us, s.lapses) for s in out.stats] == [(0, 0, 0)]


def test_lapses_sorted_by_start_post_rule(evaluator: Evaluator) -> None:
    a = Post("a", "A", (rule(rule_id="z"), rule(rule_id="b")), at=(0.0, 0.0))
    b = Post("b", "B", (rule(rule_id="a"),), at=(100.0, 0.0))
    site = Site("s", "Site", (b, a))
    events = numbered(on(0), fix(0, 100.0), fix(1, 0.0), off(2))
    assert run(evaluator, site, events).lapses == [
        lapse(0, 1, 0, post="a", rule_id="b"),
        lapse(0, 1, 0, post="a", rule_id="z"),
        lapse(1, None, 1, post="b", rule_id="a"),
        lapse(2, None, 2, post="a", rule_id="b"),
        lapse(2, None, 2, post="a", rule_id="z"),
    ]
    assert [(s.post, s.rule) for s in run(evaluator, site, events).stats] == [
        ("b", "a"), ("a", "z"), ("a", "b"),
    ]
