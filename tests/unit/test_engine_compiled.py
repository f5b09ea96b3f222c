"""The engine's compiled membership pass (engine/_ckernel.c) against numpy's and the reference.

The compiled pass runs on sites of point rules without reach when it was built (at
install, by hatch_build.py); numpy's is the reference it must equal exactly, and the
fallback. Here on such sites only, in one go and in chunks cut anywhere, plus the cases
the compiled pass hands back to numpy (an officer in more rules at once than it holds).
"""

from __future__ import annotations

import os
import pickle
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverwatch.domain.events import DutyEvent, EventBatch, FixColumns
from coverwatch.domain.site import Post, Rule, Site
from coverwatch.domain.time import seconds_to_us
from coverwatch.engine import CoverEngine, evaluate
from coverwatch.engine import _members as members_module
from coverwatch.engine._native import KERNEL
from coverwatch.server.buscover import pickle_state
from reference import Fix, evaluate_reference, sort_events, to_batch
from strategies import Scenario, scenarios

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
needs_kernel = pytest.mark.skipif(KERNEL is None, reason="the compiled pass is not built here")


def test_the_compiled_pass_is_built_in_ci() -> None:
    # `pip install -e .` builds it where gcc is; a clean clone under CI must have it.
    if os.environ.get("CI") and KERNEL is None:
        pytest.fail("engine/_ckernel.c was not built: run `make install` (needs a C compiler)")


@needs_kernel
@SETTINGS
@given(scenarios(point_only=True))
def test_compiled_equals_numpy_and_reference(sc: Scenario) -> None:
    batch = to_batch(sc.events)
    if batch.time_bounds() is not None:
        start = batch.time_bounds()[0]  # type: ignore[index]
        assert CoverEngine(sc.site, start)._use_kernel
    compiled = evaluate(sc.site, batch, end=sc.end, timeline=True)
    numpy_ = evaluate(sc.site, batch, end=sc.end, timeline=True, compiled=False)
    assert compiled.lapses == numpy_.lapses
    assert compiled.stats == numpy_.stats
    expected = evaluate_reference(sc.site, sc.events, sc.end)
    assert compiled.lapses == expected.lapses
    assert compiled.stats == expected.stats


@needs_kernel
@SETTINGS
@given(st.data())
def test_compiled_in_chunks_equals_numpy_state_by_state(data: st.DataObject) -> None:
    """Fed and advanced alike, both passes agree on the live changes and the state."""
    sc = data.draw(scenarios(point_only=True))
    ordered = [e for e in sort_events(sc.events) if sc.end is None or e.t <= sc.end]
    if not ordered:
        return
    start, end = ordered[0].t, ordered[-1].t if sc.end is None else sc.end
    engines = [CoverEngine(sc.site, start, compiled=c) for c in (True, False)]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(ordered)), max_size=8), label="cuts"))
    horizon = start
    for a, b in pairwise([0, *cuts, len(ordered)]):
        limit = min(ordered[b].t, end) if b < len(ordered) else end
        for engine in engines:
            engine.feed(to_batch(ordered[a:b]))
        if limit < horizon:
            continue
        # Often exactly where a fix goes stale: a membership ends at the horizon.
        stale = seconds_to_us(sc.site.stale_after_s)
        edges = sorted({horizon, limit} | {e.t + d for e in ordered[:b] for d in (0, stale)
                                           if horizon <= e.t + d <= limit})
        horizon = data.draw(st.one_of(st.sampled_from(edges), st.integers(horizon, limit)),
                            label="horizon")
        changes = [engine.advance(horizon) for engine in engines]
        assert changes[0] == changes[1]
        assert engines[0].rule_states() == engines[1].rule_states()
        officers = {e.officer for e in ordered if isinstance(e, Fix)}
        for o in officers:
            assert engines[0].officer_rules(o) == engines[1].officer_rules(o)
            assert engines[0].officer_last_fix(o) == engines[1].officer_last_fix(o)
    assert engines[0].close(end) == engines[1].close(end)
    assert engines[0].lapses == engines[1].lapses
    assert engines[0].stats == engines[1].stats


def _crowded_site(posts: int) -> Site:
    # Every post at one spot: an officer there is in every rule at once.
    return Site(id="s", name="Crowded", stale_after_s=5.0, posts=tuple(
        Post(f"p{i}", f"Post {i}", (Rule("r", need=2, within_m=5.0, release_m=8.0),),
             at=(0.0, 0.0)) for i in range(posts)))


def _walk(officers: int, seconds: int) -> EventBatch:
    s = seconds_to_us(1.0)
    rows = [(k * s, o, 0.3 * ((k + o) % 40), 0.0, 1.0, 1000 + k * officers + o)
            for k in range(seconds) for o in range(officers)]
    duty = [DutyEvent(0, o, True, frozenset(), o + 1) for o in range(officers)]
    return EventBatch(FixColumns.from_rows(rows), list(duty))


@needs_kernel
@pytest.mark.parametrize("posts", [3, 8, 9, 12])
def test_more_rules_at_once_than_the_kernel_holds(posts: int) -> None:
    """Past 8 memberships per officer a window goes to numpy's pass: same results."""
    site, batch = _crowded_site(posts), _walk(3, 30)
    compiled = evaluate(site, batch, timeline=True)
    numpy_ = evaluate(site, batch, timeline=True, compiled=False)
    assert compiled.lapses == numpy_.lapses
    assert compiled.stats == numpy_.stats
    assert compiled.lapses  # officers walk out of range: there are lapses to compare


@needs_kernel
def test_an_engine_pickled_mid_run_goes_on_alike() -> None:
    site, batch = _crowded_site(2), _walk(3, 30)
    whole = evaluate(site, batch)
    engine = CoverEngine(site, 0)
    engine.feed(batch)
    engine.advance(seconds_to_us(11.5))
    # A live checkpoint pickles the engine; the kernel is looked up again where loaded.
    state = pickle.loads(pickle_state(engine))
    assert state._use_kernel
    state.close(int(batch.fixes.t[-1]))
    assert state.lapses == whole.lapses
    assert state.stats == whole.stats


@needs_kernel
def test_carried_memberships_of_officers_whose_keys_divide_inexactly() -> None:
    """Keys officer * 49 + 0: 49 * (1 / 49) rounds below 1, so the kernel's quotient
    (a double's, corrected) must still name the right officer for every carried key."""
    n = 49
    site = Site(id="s", name="Row", stale_after_s=5.0, posts=tuple(
        Post(f"p{i}", f"Post {i}", (Rule("r", need=4, within_m=10.0, release_m=20.0),),
             at=(100.0 * i, 0.0)) for i in range(n)))
    s = seconds_to_us(1.0)
    # In at the first fix, then in the band (kept only by the carried membership), then out.
    dist = [5.0, 15.0, 15.0, 15.0, 25.0, 15.0, 5.0, 15.0, 15.0, 25.0]
    rows = [(k * s, o, dist[(k + o) % len(dist)], 0.0, 1.0, 100 + k * 8 + o)
            for k in range(len(dist)) for o in range(8)]
    duty = [DutyEvent(0, o, True, frozenset(), o + 1) for o in range(8)]
    engines = [CoverEngine(site, 0, compiled=c) for c in (True, False)]
    for engine in engines:
        engine.feed(EventBatch(FixColumns.from_rows(rows), duty))
    for k in range(1, len(dist)):  # a window per second: every membership is carried
        assert engines[0].advance(k * s) == engines[1].advance(k * s)
        assert [engines[0].officer_rules(o) for o in range(8)] == \
            [engines[1].officer_rules(o) for o in range(8)]
        assert engines[0].rule_states() == engines[1].rule_states()
    for engine in engines:
        engine.close(len(dist) * s)
    assert engines[0].lapses == engines[1].lapses
    assert engines[0].stats == engines[1].stats
    assert engines[0].lapses


@needs_kernel
def test_a_window_retried_larger_changes_nothing_the_first_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With little output room the compiled pass says so and runs again larger: the try
    that ran out must leave no officer's last fix changed (the room is checked before the
    pass that writes them)."""
    monkeypatch.setattr(members_module, "ROOM_PER_FIX", 0)
    site = Site(id="s", name="Row", stale_after_s=5.0, posts=tuple(
        Post(f"p{i}", f"Post {i}", (Rule("r", need=3, within_m=10.0, release_m=20.0),),
             at=(100.0 * i, 0.0)) for i in range(4)))
    s = seconds_to_us(1.0)
    officers = 300
    rows = [(k * s + s // 2, o, 100.0 * (o % 4) + (k * 7 + o) % 25, 0.0, 1.0,
             1000 + k * officers + o) for k in range(6) for o in range(officers)]
    # A duty change inside every window: every interval is written out, none counted apart.
    duty = [DutyEvent(0, o, True, frozenset(), o + 1) for o in range(officers)]
    duty += [DutyEvent(k * s + s // 4, officers, k % 2 == 0, frozenset(), 500 + k)
             for k in range(1, 6)]
    # Each rule's count at every change (its timeline) shows any contribution lost.
    engines = [CoverEngine(site, 0, compiled=c, timeline=True) for c in (True, False)]
    for engine in engines:
        engine.feed(EventBatch(FixColumns.from_rows(rows), duty))
    for k in range(1, 7):
        assert engines[0].advance(k * s) == engines[1].advance(k * s)
        assert engines[0].rule_states() == engines[1].rule_states()
        assert [engines[0].officer_rules(o) for o in range(officers)] == \
            [engines[1].officer_rules(o) for o in range(officers)]
    for engine in engines:
        engine.close(7 * s)
    assert engines[0].lapses == engines[1].lapses
    assert engines[0].stats == engines[1].stats


@needs_kernel
@pytest.mark.parametrize("officers", [[0, 1, 2, 3], [2, 3, 4], [3, 1, 2, 0], [0, 1, 1, 2], [5]])
def test_duty_at_one_instant_leaves_each_officer_the_last_event(officers: list[int]) -> None:
    """A shift's duty all at the window's start is applied at once (the capability sets as
    one slice when the officers come in order, once each): each officer is left with their
    own last event's duty and capabilities, as numpy's pass leaves them."""
    site = _crowded_site(1)
    duty = [DutyEvent(0, o, k % 4 != 3, frozenset({f"c{k}"}) if k % 2 else frozenset(), k + 1)
            for k, o in enumerate(officers)]
    rows = [(0, o, 0.0, 0.0, 1.0, 100 + o) for o in sorted(set(officers))]
    engines = [CoverEngine(site, 0, compiled=c) for c in (True, False)]
    for engine in engines:
        engine.feed(EventBatch(FixColumns.from_rows(rows), duty))
        engine.advance(seconds_to_us(1.0))
    last = {ev.officer: (ev.on, ev.capabilities) for ev in duty}
    for o in range(max(officers) + 2):
        expected = last.get(o, (False, frozenset()))
        assert engines[0].officer_duty(o) == engines[1].officer_duty(o) == expected
