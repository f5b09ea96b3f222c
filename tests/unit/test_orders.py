"""Tests of post orders generated from the cover rules: wording, versions and
the per-post account of what changed between two sites."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from coverwatch.domain.orders import orders_changes, post_orders, render_rule, site_orders
from coverwatch.domain.site import Post, Rule, Site, Walkway
from coverwatch.formats.sitefile import load_site

YARD = Path(__file__).parents[2] / "examples" / "yard" / "site.yaml"


def make_site(rule: Rule | None = None, *, stale_after_s: float = 30.0,
              orders: str = "Stay at the gate.", name: str = "Main Gate",
              at: tuple[float, float] | None = (0.0, 0.0),
              area: tuple[tuple[float, float], ...] | None = None) -> Site:
    rule = rule or Rule(id="armed-cover", need=2, within_m=25, release_m=30, grace_s=30,
                        capability="armed", when="open-hours")
    gate = Post(id="main-gate", name=name, rules=(rule,), at=at, area=area, gate=True,
                orders=orders)
    other = Post(id="yard", name="Yard", at=(50.0, 50.0),
                 rules=(Rule(id="someone", need=1, within_m=40, release_m=40),))
    return Site(id="test", name="Test Site", posts=(gate, other), stale_after_s=stale_after_s,
                flags={"open-hours": False, "night": False},
                walkways=(Walkway("lane", ((0.0, 0.0), (100.0, 0.0))),))


BASE = Rule(id="armed-cover", need=2, within_m=25, release_m=30, grace_s=30,
            capability="armed", when="open-hours")

# One change per rule field (the id only names the rule and is tested apart).
RULE_CHANGES: dict[str, Callable[[Rule], Rule]] = {
    "need": lambda r: dataclasses.replace(r, need=3),
    "capability": lambda r: dataclasses.replace(r, capability=None),
    "within_m": lambda r: dataclasses.replace(r, within_m=20),
    "release_m": lambda r: dataclasses.replace(r, release_m=35),
    "grace_s": lambda r: dataclasses.replace(r, grace_s=45),
    "when": lambda r: dataclasses.replace(r, when="night"),
    "when_gate_open": lambda r: dataclasses.replace(r, when_gate_open=True),
    "reach_s": lambda r: dataclasses.replace(r, reach_s=20.0),
}


def text_and_version(site: Site) -> tuple[str, str]:
    orders = post_orders(site, site.posts[0])
    return orders.text, orders.version


def test_every_rule_field_has_a_change_in_this_test() -> None:
    fields = {f.name for f in dataclasses.fields(Rule)} - {"id"}
    assert fields == set(RULE_CHANGES)


@pytest.mark.parametrize("field", sorted(RULE_CHANGES))
def test_changing_any_rule_field_changes_the_orders_and_the_version(field: str) -> None:
    before_text, before_version = text_and_version(make_site(BASE))
    changed = RULE_CHANGES[field](BASE)
    assert getattr(changed, field) != getattr(BASE, field)
    after_text, after_version = text_and_version(make_site(changed))
    assert after_text != before_text
    assert after_version != before_version


@pytest.mark.parametrize("kwargs", [
    {"stale_after_s": 45.0},
    {"orders": "Stay beside the gate."},
    {"name": "North Gate"},
    {"at": None, "area": ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0))},
])
def test_changing_what_the_post_needs_changes_the_orders(kwargs: dict[str, object]) -> None:
    before_text, before_version = text_and_version(make_site(BASE))
    after_text, after_version = text_and_version(make_site(BASE, **kwargs))  # type: ignore[arg-type]
    assert after_text != before_text
    assert after_version != before_version


def test_moving_a_post_changes_the_version_though_the_text_stays() -> None:
    before_text, before_version = text_and_version(make_site(BASE))
    after_text, after_version = text_and_version(make_site(BASE, at=(5.0, 0.0)))
    assert after_text == before_text
    assert after_version != before_version


def test_renaming_a_rule_changes_the_version_only() -> None:
    site = make_site(BASE)
    renamed = make_site(dataclasses.replace(BASE, id="armed-two"))
    assert post_orders(site, site.posts[0]).text == post_orders(renamed, renamed.posts[0]).text
    assert post_orders(site, site.posts[0]).version != post_orders(
        renamed, renamed.posts[0]).version


def test_version_is_stable_and_ignores_other_posts() -> None:
    site = make_site(BASE)
    first = post_orders(site, site.posts[0]).version
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert post_orders(make_site(BASE), make_site(BASE).posts[0]).version == first
    other = dataclasses.replace(site.posts[1], orders="Walk the yard.")
    changed = dataclasses.replace(site, posts=(site.posts[0], other))
    assert post_orders(changed, changed.posts[0]).version == first
    assert post_orders(changed, changed.posts[1]).version != post_orders(
        site, site.posts[1]).version


def test_the_example_in_the_issue_reads_as_written() -> None:
    site = make_site(BASE)
    text = render_rule(site, site.posts[0], BASE)
    assert text.startswith("At least 2 armed officers must stay within 25 m of Main Gate "
                           "whenever open-hours is on.")
    assert "Cover may drop below 2 for no more than 30 s" in text
    assert "An officer counts once within 25 m and keeps counting until more than 30 m away." \
        in text


def test_no_hysteresis_sentence_without_a_release_band() -> None:
    rule = dataclasses.replace(BASE, release_m=25)
    site = make_site(rule)
    assert "keeps counting" not in render_rule(site, site.posts[0], rule)


def test_zero_grace_means_never() -> None:
    rule = dataclasses.replace(BASE, grace_s=0)
    site = make_site(rule)
    text = render_rule(site, site.posts[0], rule)
    assert "Cover must never drop below 2" in text
    assert "no more than" not in text


def test_one_officer_wording() -> None:
    rule = Rule(id="staffed", need=1, within_m=10, release_m=10, grace_s=0, when_gate_open=True)
    site = make_site(rule)
    text = render_rule(site, site.posts[0], rule)
    assert text.startswith("At least 1 officer must be within 10 m of Main Gate whenever the "
                           "gate is open.")
    assert "The post must never be left without an officer" in text


def test_gate_and_flag_together() -> None:
    rule = dataclasses.replace(BASE, when_gate_open=True)
    site = make_site(rule)
    assert "whenever open-hours is on and the gate is open" in render_rule(
        site, site.posts[0], rule)


def test_rule_without_conditions_applies_at_all_times() -> None:
    rule = dataclasses.replace(BASE, when=None)
    site = make_site(rule)
    assert "at all times" in render_rule(site, site.posts[0], rule)


def test_area_post_wording() -> None:
    area = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0))
    site = make_site(BASE, at=None, area=area, name="Equipment Store")
    text = render_rule(site, site.posts[0], BASE)
    assert "inside or within 25 m of the Equipment Store area" in text
    inside = dataclasses.replace(BASE, within_m=0)
    site = make_site(inside, at=None, area=area, name="Equipment Store")
    assert "inside the Equipment Store area" in render_rule(site, site.posts[0], inside)


def test_reach_wording_with_and_without_a_distance() -> None:
    reach_only = Rule(id="response", need=2, within_m=float("inf"), release_m=float("inf"),
                      grace_s=60, capability="armed", reach_s=20)
    site = make_site(reach_only)
    text = render_rule(site, site.posts[0], reach_only)
    assert "able to reach Main Gate on foot along the walkways within 20 s" in text
    assert "inf" not in text and "within 25 m" not in text
    assert "Reach is timed at 3 m/s: at most 60 m of walkway" in text
    both = dataclasses.replace(BASE, reach_s=15.0)
    site = make_site(both)
    text = render_rule(site, site.posts[0], both)
    assert "stay within 25 m of Main Gate and be able to reach it on foot" in text


def test_general_points_and_free_text_follow_the_rules() -> None:
    site = make_site(BASE, orders="  Keep the barrier down.\n")
    orders = post_orders(site, site.posts[0])
    assert "Keep your device on: a position older than 30 s does not count." in orders.general
    assert any("booked on duty as armed" in g for g in orders.general)
    assert orders.free_text == "Keep the barrier down."
    assert orders.text.endswith("Keep the barrier down.")
    assert orders.text.index(orders.rules[0]) < orders.text.index("Keep the barrier down.")


def test_post_without_rules_says_so() -> None:
    site = make_site(BASE)
    bare = dataclasses.replace(site.posts[1], rules=())
    site = dataclasses.replace(site, posts=(site.posts[0], bare))
    orders = post_orders(site, bare)
    assert orders.rules == ("No cover rule applies to this post.",)
    assert orders.general == ()


def test_example_site_orders() -> None:
    orders = {o.post_id: o for o in site_orders(load_site(YARD))}
    assert list(orders) == ["main-gate", "service-gate", "store"]
    gate = orders["main-gate"]
    assert gate.rule_ids == ("armed-cover", "armed-response", "open-gate-staffed")
    assert gate.rules[0].startswith("At least 2 armed officers must stay within 25 m of Main "
                                    "Gate whenever open-hours is on.")
    assert "within 20 s" in gate.rules[1] and "4 m/s" in gate.rules[1]
    assert "inside or within 20 m of the Equipment Store area" in orders["store"].rules[0]
    assert "5 min" in orders["store"].rules[0]


# -- what changed ------------------------------------------------------------


def change_of(old: Site, new: Site, post: str = "main-gate") -> tuple[str, tuple[str, ...]]:
    found = {c.post_id: c for c in orders_changes(old, new)}[post]
    return found.status, found.what


def test_changes_name_each_rule_field() -> None:
    status, what = change_of(make_site(BASE), make_site(dataclasses.replace(BASE, need=1)))
    assert status == "changed"
    assert what == ("rule armed-cover: needs 1 officer instead of 2",)
    _, what = change_of(make_site(BASE), make_site(dataclasses.replace(BASE, within_m=20)))
    assert what == ("rule armed-cover: counts officers within 20 m instead of 25 m",)


def test_changes_report_free_text_and_site_wide_settings() -> None:
    _, what = change_of(make_site(BASE), make_site(BASE, orders="Other words."))
    assert what == ("written orders changed",)
    _, what = change_of(make_site(BASE), make_site(BASE, stale_after_s=60))
    assert what == ("a position counts for 60 s instead of 30 s",)


def test_unchanged_added_and_removed_posts() -> None:
    old = make_site(BASE)
    assert change_of(old, make_site(BASE)) == ("unchanged", ())
    fewer = dataclasses.replace(old, posts=old.posts[:1])
    changes = {c.post_id: c for c in orders_changes(old, fewer)}
    assert changes["yard"].status == "removed" and changes["yard"].new_version is None
    changes = {c.post_id: c for c in orders_changes(fewer, old)}
    assert changes["yard"].status == "added" and changes["yard"].old_version is None
    assert changes["main-gate"].status == "unchanged"


def test_added_and_removed_rules() -> None:
    old = make_site(BASE)
    extra = Rule(id="staffed", need=1, within_m=10, release_m=10, when_gate_open=True)
    gate = dataclasses.replace(old.posts[0], rules=(BASE, extra))
    new = dataclasses.replace(old, posts=(gate, old.posts[1]))
    status, what = change_of(old, new)
    assert status == "changed"
    assert what == ("rule staffed added (1 officer within 10 m)",)
    _, what = change_of(new, old)
    assert what == ("rule staffed removed (1 officer within 10 m)",)
