"""Property tests: the engine equals the brute-force reference, in one go and in chunks.

Sites and event streams come from ``strategies``: coarse grids, half-second
times and short staleness, so boundary cases (``d == within``, fixes expiring
exactly at another event, several events at one time) are common. Many sites
have walkways and ``reach_s`` rules, checked against the reference's brute-force
travel (snap to every segment, Dijkstra per query). Some fixes are scans whose
accuracy grows with time; the chunked test also cuts windows exactly where a
scan's grown accuracy ends its membership.
"""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverwatch.domain.time import seconds_to_us
from coverwatch.engine import CoverEngine, evaluate
from coverwatch.engine.results import Lapse
from coverwatch.planning.network import build_network
from reference import (
    Event,
    Fix,
    brute_travel,
    evaluate_reference,
    membership_end,
    sort_events,
    to_batch,
)
from strategies import Scenario, scenarios

ENGINE_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _describe(sc: Scenario) -> str:
    lines = [f"end={sc.end} stale={sc.site.stale_after_s} flags={dict(sc.site.flags)}"]
    lines += [repr(p) for p in sc.site.posts]
    lines += [repr(w) for w in sc.site.walkways] + [repr(b) for b in sc.site.barriers]
    if sc.site.walkways:
        lines.append(f"speeds={dict(sc.site.speeds_mps)}")
    lines += [repr(e) for e in sort_events(sc.events)]
    return "\n".join(lines)


def _lapse_time(lapses: list[Lapse], post: str, rule: str, window_end: int) -> int:
    return sum(
        (window_end if lp.end is None else lp.end) - lp.start
        for lp in lapses
        if (lp.post, lp.rule) == (post, rule)
    )


# Both membership passes: compiled (engine/_ckernel.c, used on sites of point rules
# without reach when it is built) and numpy's, the reference it falls back to.
PASSES = pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])


@PASSES
@ENGINE_SETTINGS
@given(sc=scenarios())
def test_engine_matches_reference(sc: Scenario, compiled: bool) -> None:
    expected = evaluate_reference(sc.site, sc.events, sc.end)
    got = evaluate(sc.site, to_batch(sc.events), end=sc.end, timeline=True, compiled=compiled)
    assert got.lapses == expected.lapses, _describe(sc)
    assert got.stats == expected.stats, _describe(sc)


@PASSES
@ENGINE_SETTINGS
@given(data=st.data())
def test_chunked_feed_and_advance_equals_evaluate(data: st.DataObject, compiled: bool) -> None:
    sc = data.draw(scenarios())
    ordered = sort_events(sc.events)
    kept = [e for e in ordered if sc.end is None or e.t <= sc.end]
    if not kept:
        return
    start = kept[0].t
    end = kept[-1].t if sc.end is None else sc.end
    stale = seconds_to_us(sc.site.stale_after_s)
    net = build_network(sc.site) if sc.site.walkways else None

    def travel(post: str, x: float, y: float) -> float:
        assert net is not None
        return brute_travel(net, post, x, y)

    # When each growing scan's membership of each rule ends: horizons worth cutting at.
    ends = {
        end_t
        for e in ordered
        if isinstance(e, Fix) and e.growth > 0
        for post, rule in sc.site.rules()
        if (end_t := membership_end(sc.site, post, rule, e, stale, travel)) is not None
    }

    engine = CoverEngine(sc.site, start, timeline=True, compiled=compiled)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(ordered)), max_size=8), label="cuts"))
    bounds = [0, *cuts, len(ordered)]
    horizon = start
    for a, b in pairwise(bounds):
        chunk: list[Event] = ordered[a:b]
        engine.feed(to_batch(data.draw(st.permutations(chunk), label="chunk order")))
        # Events at exactly the next unfed time may still come, so stop there.
        limit = min(ordered[b].t, end) if b < len(ordered) else end
        if limit < horizon:
            continue
        interesting = {horizon, limit} | {e.t for e in ordered[:b] if horizon <= e.t <= limit}
        interesting |= {
            e.t + stale
            for e in ordered[:b]
            if isinstance(e, Fix) and horizon <= e.t + stale <= limit
        }
        interesting |= {t for t in ends if horizon <= t <= limit}
        horizon = data.draw(
            st.one_of(st.sampled_from(sorted(interesting)), st.integers(horizon, limit)),
            label="horizon",
        )
        engine.advance(horizon)
    engine.close(end)

    whole = evaluate(sc.site, to_batch(sc.events), end=sc.end, timeline=True,
                     compiled=not compiled)
    assert engine.lapses == whole.lapses, _describe(sc)
    assert engine.stats == whole.stats, _describe(sc)
    expected = evaluate_reference(sc.site, sc.events, sc.end)
    assert engine.lapses == expected.lapses, _describe(sc)
    assert engine.stats == expected.stats, _describe(sc)


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_reference_ignores_input_order(sc: Scenario, rnd: random.Random) -> None:
    shuffled = list(sc.events)
    rnd.shuffle(shuffled)
    a = evaluate_reference(sc.site, sc.events, sc.end)
    b = evaluate_reference(sc.site, shuffled, sc.end)
    assert (a.lapses, a.stats) == (b.lapses, b.stats)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_reference_totals_are_consistent(sc: Scenario) -> None:
    result = evaluate_reference(sc.site, sc.events, sc.end)
    if result.window is None:
        assert result.lapses == []
        return
    w0, w1 = result.window
    for stats in result.stats:
        assert 0 <= stats.covered_us <= stats.active_us <= w1 - w0
        lapse_time = _lapse_time(result.lapses, stats.post, stats.rule, w1)
        assert stats.covered_us + lapse_time == stats.active_us
    by_rule: dict[tuple[str, str], list[Lapse]] = {}
    for lp in result.lapses:
        by_rule.setdefault((lp.post, lp.rule), []).append(lp)
        assert w0 <= lp.start <= w1
        assert lp.end is None or lp.start < lp.end <= w1
        if lp.alert_at is not None:
            assert lp.start <= lp.alert_at <= w1
    for (post, rule), lapses in by_rule.items():
        # Maximal: consecutive lapses of one rule never touch.
        for before, after in pairwise(lapses):
            assert before.end is not None and before.end < after.start
        assert sum(lp.end is None for lp in lapses) <= 1
        need = next(r.need for p, r in sc.site.rules() if (p.id, r.id) == (post, rule))
        assert all(0 <= lp.min_cover < need for lp in lapses)

