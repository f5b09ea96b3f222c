"""A scan's accuracy grows with time since the scan (docs/semantics.md, "Scans of checkpoints").

Each test runs against the brute-force reference and the engine, as in test_semantics,
and the carry-over of a growing scan across windows and a saved engine state is checked
against the whole-window answer.
"""

from __future__ import annotations

import dataclasses

from test_semantics import (
    Evaluator,
    Outcome,
    at,
    evaluator,
    fix,
    lapse,
    on,
    point_site,
    rule,
    run,
)

from coverwatch.engine import CoverEngine, engine_state, evaluate, restore_engine
from reference import Fix, to_batch

__all__ = ["evaluator"]  # the fixture, imported so pytest finds it here

WALK = 1.5  # m/s, the site's default walking speed for scans


def scan(s: float, x: float, acc: float = 1.0, growth: float = WALK) -> Fix:
    return dataclasses.replace(fix(s, x, acc=acc), growth=growth)


def test_scan_20s_ago_counts_for_post_25m_away_until_grown_accuracy_puts_it_out(
    evaluator: Evaluator,
) -> None:
    # Checkpoint 25 m from the post, accuracy 1 m: d = 26 m at the scan, 60 m allowed,
    # so the scan holds while 1.5 m/s * elapsed <= 34 m: to 22.666666 s (whole us).
    site = point_site(rule(within=60.0), stale=60.0)
    out: Outcome = run(evaluator, site, [on(0), scan(0, 25.0)], end=at(40))
    cut = at(0) + 1 + 22_666_666
    assert out.lapses == [dataclasses.replace(lapse(0, None, 0), start=cut, alert_at=cut)]
    assert at(20) < cut  # 20 s after the scan the officer still counts
    assert out.stats[0].covered_us == cut - at(0)


def test_ordinary_fix_at_the_same_place_counts_until_stale(evaluator: Evaluator) -> None:
    site = point_site(rule(within=60.0), stale=60.0)
    out = run(evaluator, site, [on(0), scan(0, 25.0, growth=0.0)], end=at(40))
    assert out.lapses == []


def test_band_fix_after_the_scan_ran_out_does_not_inherit_in(evaluator: Evaluator) -> None:
    # In by the scan (26 <= 30); out at 22.67 s; a fix at 25 s in the band (45 m)
    # finds no membership to keep.
    site = point_site(rule(within=30.0, release=60.0), stale=60.0)
    out = run(evaluator, site, [on(0), scan(0, 25.0), fix(25, 45.0)], end=at(40))
    cut = at(0) + 1 + 22_666_666
    assert out.lapses == [dataclasses.replace(lapse(0, None, 0), start=cut, alert_at=cut)]


def test_band_fix_before_the_scan_ran_out_keeps_in(evaluator: Evaluator) -> None:
    site = point_site(rule(within=30.0, release=60.0), stale=60.0)
    out = run(evaluator, site, [on(0), scan(0, 25.0), fix(10, 45.0)], end=at(40))
    assert out.lapses == []


def test_growing_scan_carries_across_windows_and_saved_state() -> None:
    site = point_site(rule(within=30.0, release=60.0), stale=60.0)
    events = [on(0), scan(0, 25.0), fix(25, 45.0)]
    whole = evaluate(site, to_batch(events), end=at(40))
    engine = CoverEngine(site, at(0))
    engine.feed(to_batch(events[:2]))
    engine.advance(at(5))
    state = engine_state(engine, ["P1"])
    assert state["membership_ends"] == [at(0) + 1 + 22_666_666]
    engine = restore_engine(site, state)
    engine.feed(to_batch(events[2:]))
    engine.advance(at(25))
    engine.close(at(40))
    assert engine.lapses == list(whole.lapses)
    assert [lp.start for lp in engine.lapses] == [at(0) + 1 + 22_666_666]
