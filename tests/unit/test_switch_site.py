"""CoverEngine.switch_site: new rules in force from a defined instant."""

from __future__ import annotations

import dataclasses
import random

from coverwatch.domain.events import DutyEvent, EventBatch, FixColumns, FlagEvent, GateEvent
from coverwatch.domain.site import Post, Rule, Site
from coverwatch.engine import CoverEngine, evaluate, sort_batch

S = 1_000_000


def _site(need: int = 1, grace: float = 0.0, extra_rule: bool = False) -> Site:
    rules = [Rule("cover", need, 10.0, 10.0, grace)]
    if extra_rule:
        rules.append(Rule("second", 1, 10.0, 10.0, 0.0))
    return Site("s", "S", (Post("g", "G", tuple(rules), at=(0.0, 0.0)),), stale_after_s=30)


def _run(site_a: Site, site_b: Site, switch_at: int, fixes: list[tuple[int, int, float]],
         end: int) -> CoverEngine:
    rows = [(t, o, x, 0.0, 0.0, i + 1) for i, (t, o, x) in enumerate(fixes)]
    duty = [DutyEvent(0, o, True, frozenset(), 0) for o in (0, 1)]
    batch = EventBatch(FixColumns.from_rows(rows), duty)
    eng = CoverEngine(site_a, 0)
    eng.feed(batch)
    eng.advance(switch_at)
    eng.switch_site(site_b)
    eng.close(end)
    return eng


def test_lowering_need_ends_a_lapse_at_the_switch() -> None:
    # One officer present; need 2 means a lapse from 0; need 1 from t=10 s ends it then.
    eng = _run(_site(need=2), _site(need=1), 10 * S, [(0, 0, 0.0), (20 * S, 0, 0.0)], 25 * S)
    assert [(lp.start, lp.end) for lp in eng.lapses] == [(0, 10 * S)]


def test_raising_need_starts_a_lapse_at_the_switch() -> None:
    eng = _run(_site(need=1), _site(need=2), 10 * S, [(0, 0, 0.0), (20 * S, 0, 0.0)], 25 * S)
    assert [(lp.start, lp.end, lp.min_cover) for lp in eng.lapses] == [(10 * S, None, 1)]


def test_a_kept_lapse_stays_one_lapse_with_one_alert() -> None:
    # Nobody there: the lapse runs through the switch; grace 5 s -> alerted once.
    eng = _run(_site(grace=5), _site(grace=5), 10 * S, [(0, 0, 50.0), (20 * S, 0, 50.0)], 25 * S)
    assert [(lp.start, lp.end, lp.alert_at) for lp in eng.lapses] == [(0, None, 5 * S)]
    assert eng.stats[0].alerts == 1


def test_a_removed_rule_s_lapse_ends_at_the_switch() -> None:
    eng = _run(_site(extra_rule=True), _site(), 10 * S, [(0, 0, 50.0)], 25 * S)
    second = [lp for lp in eng.lapses if lp.rule == "second"]
    assert [(lp.start, lp.end, lp.alert_at) for lp in second] == [(0, 10 * S, 0)]
    assert [s.rule for s in eng.retired_stats] == ["second"]


def test_a_new_rule_is_evaluated_from_the_switch() -> None:
    eng = _run(_site(), _site(extra_rule=True), 10 * S, [(0, 0, 50.0)], 25 * S)
    second = [lp for lp in eng.lapses if lp.rule == "second"]
    assert [(lp.start, lp.end) for lp in second] == [(10 * S, None)]


def test_membership_in_the_band_is_kept_only_for_an_existing_rule() -> None:
    # release 20: an officer at 15 m who entered at 5 m stays in across the switch.
    site = Site("s", "S", (Post("g", "G", (Rule("cover", 1, 10.0, 20.0, 0.0),),
                                at=(0.0, 0.0)),), stale_after_s=30)
    renamed = dataclasses.replace(
        site, posts=(dataclasses.replace(site.posts[0], rules=(
            Rule("renamed", 1, 10.0, 20.0, 0.0),)),))
    fixes = [(0, 0, 5.0), (5 * S, 0, 15.0), (20 * S, 0, 15.0)]
    kept = _run(site, site, 10 * S, fixes, 25 * S)
    assert kept.lapses == []
    fresh = _run(site, renamed, 10 * S, fixes, 25 * S)
    assert [(lp.rule, lp.start, lp.end) for lp in fresh.lapses] == [("renamed", 10 * S, None)]


def _random_case(rng: random.Random) -> tuple[Site, EventBatch]:
    posts = []
    for i in range(rng.randint(1, 3)):
        rules = []
        for j in range(rng.randint(1, 2)):
            w = rng.randint(0, 10)
            rules.append(Rule(f"r{j}", rng.randint(1, 2), w, w + rng.choice([0, 3]),
                              rng.choice([0, 1, 2]), rng.choice([None, "armed"]),
                              rng.choice([None, "f"]), rng.random() < 0.3))
        posts.append(Post(f"p{i}", "P", tuple(rules), at=(rng.randint(-5, 5), 0), gate=True))
    site = Site("s", "S", tuple(posts), stale_after_s=rng.randint(1, 4), flags={"f": True})
    rows, ctl = [], []
    for k in range(rng.randint(1, 50)):
        t = rng.randint(0, 40) * S // 2
        r = rng.random()
        if r < 0.7:
            rows.append((t, rng.randint(0, 3), rng.randint(-15, 15), rng.randint(-15, 15),
                         rng.choice([0, 1]), k))
        elif r < 0.85:
            ctl.append(DutyEvent(t, rng.randint(0, 3), rng.random() < 0.7,
                                 frozenset(rng.choice([(), ("armed",)])), k))
        elif r < 0.93:
            ctl.append(GateEvent(t, f"p{rng.randint(0, len(posts) - 1)}", rng.random() < 0.5, k))
        else:
            ctl.append(FlagEvent(t, "f", rng.random() < 0.5, k))
    return site, EventBatch(FixColumns.from_rows(rows), ctl)


def test_switching_to_the_same_site_changes_nothing() -> None:
    rng = random.Random(7)
    for _ in range(300):
        site, batch = _random_case(rng)
        bounds = batch.time_bounds()
        assert bounds is not None
        expected = evaluate(site, batch)
        eng = CoverEngine(site, bounds[0])
        eng.feed(sort_batch(batch))
        switch = rng.randint(bounds[0], bounds[1])
        eng.advance(switch)
        assert eng.switch_site(site) == []
        eng.close(bounds[1])
        assert eng.lapses == expected.lapses
        got = [(s.active_us, s.covered_us, s.lapses, s.alerts) for s in eng.stats]
        assert got == [(s.active_us, s.covered_us, s.lapses, s.alerts) for s in expected.stats]
