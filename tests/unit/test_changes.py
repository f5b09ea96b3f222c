"""Tests of site change classification: each kind of difference is weakening,
strengthening or neutral, and the overall class decides who must approve."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from coverwatch.domain.changes import Change, SiteDiff, diff_sites, required_approval
from coverwatch.domain.site import Barrier, LatLon, Post, Rule, Site, Walkway

ARMED = Rule(id="armed-cover", need=2, within_m=25, release_m=30, grace_s=30,
             capability="armed", when="open-hours")
REACH = Rule(id="response", need=1, within_m=float("inf"), release_m=float("inf"),
             capability="armed", reach_s=20)
STAFFED = Rule(id="staffed", need=1, within_m=10, release_m=10, when_gate_open=True)


def make_site(*rules: Rule, **site_fields: object) -> Site:
    gate = Post(id="main-gate", name="Main Gate", at=(0.0, 0.0), gate=True,
                rules=rules or (ARMED, REACH, STAFFED), orders="Stay at the gate.")
    store = Post(id="store", name="Store", area=((50.0, 0.0), (60.0, 0.0), (60.0, 10.0)),
                 rules=(Rule(id="any", need=1, within_m=5, release_m=5),))
    fields: dict[str, object] = {
        "id": "test", "name": "Test", "posts": (gate, store),
        "flags": {"open-hours": False, "night": False},
        "walkways": (Walkway("lane", ((0.0, 0.0), (100.0, 0.0))),),
        "speeds_mps": {"default": 3.0, "armed": 4.0},
    }
    fields.update(site_fields)
    return Site(**fields)


def with_rule(change: Callable[[Rule], Rule], rule: Rule = ARMED) -> Site:
    rules = tuple(change(r) if r.id == rule.id else r for r in (ARMED, REACH, STAFFED))
    return make_site(*rules)


def only(diff: SiteDiff) -> Change:
    assert len(diff.changes) == 1, diff.changes
    return diff.changes[0]


R = dataclasses.replace
RULE_CASES: list[tuple[str, Rule, Callable[[Rule], Rule], str]] = [
    ("need", ARMED, lambda r: R(r, need=1), "weakening"),
    ("need", ARMED, lambda r: R(r, need=3), "strengthening"),
    ("within_m", ARMED, lambda r: R(r, within_m=28), "weakening"),
    ("within_m", ARMED, lambda r: R(r, within_m=20), "strengthening"),
    ("release_m", ARMED, lambda r: R(r, release_m=40), "weakening"),
    ("release_m", ARMED, lambda r: R(r, release_m=25), "strengthening"),
    ("grace_s", ARMED, lambda r: R(r, grace_s=60), "weakening"),
    ("grace_s", ARMED, lambda r: R(r, grace_s=0), "strengthening"),
    ("reach_s", REACH, lambda r: R(r, reach_s=30.0), "weakening"),
    ("reach_s", REACH, lambda r: R(r, reach_s=10.0), "strengthening"),
    ("reach_s", ARMED, lambda r: R(r, reach_s=10.0), "strengthening"),
    ("capability", ARMED, lambda r: R(r, capability=None), "weakening"),
    ("capability", STAFFED, lambda r: R(r, capability="armed"), "strengthening"),
    ("capability", ARMED, lambda r: R(r, capability="first-aid"), "weakening"),
    ("when", STAFFED, lambda r: R(r, when="night"), "weakening"),
    ("when", ARMED, lambda r: R(r, when=None), "strengthening"),
    ("when", ARMED, lambda r: R(r, when="night"), "weakening"),
    ("when_gate_open", ARMED, lambda r: R(r, when_gate_open=True), "weakening"),
    ("when_gate_open", STAFFED, lambda r: R(r, when_gate_open=False), "strengthening"),
]


@pytest.mark.parametrize(("field", "rule", "change", "kind"), RULE_CASES)
def test_rule_field_changes(field: str, rule: Rule, change: Callable[[Rule], Rule],
                            kind: str) -> None:
    diff = diff_sites(make_site(), with_rule(change, rule))
    found = only(diff)
    assert (found.post, found.rule, found.field, found.kind) == ("main-gate", rule.id, field,
                                                                kind)
    assert found.old == getattr(rule, field)
    assert found.new == getattr(change(rule), field)
    assert diff.overall == kind
    assert found.description.startswith(f"rule {rule.id}: ")


def test_removing_reach_requirement_weakens() -> None:
    with_reach = R(ARMED, reach_s=20.0)
    diff = diff_sites(make_site(with_reach, STAFFED), make_site(ARMED, STAFFED))
    assert (only(diff).field, only(diff).kind) == ("reach_s", "weakening")


def test_removed_and_added_rules() -> None:
    fewer = make_site(ARMED, REACH)
    removed = only(diff_sites(make_site(), fewer))
    assert (removed.field, removed.rule, removed.kind) == ("rule", "staffed", "weakening")
    added = only(diff_sites(fewer, make_site()))
    assert (added.field, added.rule, added.kind) == ("rule", "staffed", "strengthening")


def test_renamed_rule_reads_as_removed_and_added() -> None:
    diff = diff_sites(make_site(), make_site(R(ARMED, id="armed-two"), REACH, STAFFED))
    assert sorted(c.kind for c in diff.changes) == ["strengthening", "weakening"]
    assert diff.overall == "weakening"


def test_removed_and_added_posts() -> None:
    site = make_site()
    fewer = R(site, posts=site.posts[:1])
    removed = only(diff_sites(site, fewer))
    assert (removed.field, removed.post, removed.kind) == ("post", "store", "weakening")
    added = only(diff_sites(fewer, site))
    assert (added.field, added.post, added.kind) == ("post", "store", "strengthening")
    bare = R(site.posts[1], rules=())
    assert only(diff_sites(R(site, posts=(site.posts[0], bare)), fewer)).kind == "neutral"


def test_names_and_free_text_are_neutral() -> None:
    site = make_site()
    gate = R(site.posts[0], name="North Gate", orders="Other words.")
    diff = diff_sites(site, R(site, name="Renamed", posts=(gate, site.posts[1])))
    assert {c.field for c in diff.changes} == {"name", "orders"}
    assert {c.kind for c in diff.changes} == {"neutral"}
    assert diff.overall == "neutral"
    assert required_approval(diff) == "admin"


def test_moving_a_post_weakens() -> None:
    site = make_site()
    moved = R(site.posts[1], area=((50.0, 0.0), (70.0, 0.0), (60.0, 10.0)))
    found = only(diff_sites(site, R(site, posts=(site.posts[0], moved))))
    assert (found.field, found.kind) == ("place", "weakening")


@pytest.mark.parametrize(("fields", "field", "kind"), [
    ({"stale_after_s": 60.0}, "stale_after_s", "weakening"),
    ({"stale_after_s": 10.0}, "stale_after_s", "strengthening"),
    ({"speeds_mps": {"default": 3.0, "armed": 5.0}}, "speeds_mps.armed", "weakening"),
    ({"speeds_mps": {"default": 3.0}}, "speeds_mps.armed", "strengthening"),
    ({"barriers": (Barrier("fence", ((50.0, -1.0), (50.0, 1.0))),)}, "walkways", "weakening"),
    ({"origin": LatLon(51.5, -0.1)}, "origin", "weakening"),
    ({"flags": {"open-hours": True, "night": False}}, "flags.open-hours", "strengthening"),
    ({"flags": {"open-hours": False, "night": True}}, "flags.night", "neutral"),
    ({"timezone": "Europe/London"}, "timezone", "neutral"),
])
def test_site_wide_changes(fields: dict[str, object], field: str, kind: str) -> None:
    found = only(diff_sites(make_site(), make_site(**fields)))
    assert (found.post, found.field, found.kind) == (None, field, kind)


def test_speed_without_reach_rules_is_not_a_change() -> None:
    plain = (ARMED, STAFFED)
    assert diff_sites(make_site(*plain),
                      make_site(*plain, speeds_mps={"default": 9.0})).changes == ()


def test_overall_and_approval() -> None:
    site = make_site()
    same = diff_sites(site, make_site())
    assert same.overall == "none" and required_approval(same) == "admin"
    stronger = diff_sites(site, with_rule(lambda r: R(r, need=3)))
    assert stronger.overall == "strengthening" and required_approval(stronger) == "admin"
    mixed = diff_sites(site, make_site(R(ARMED, need=3), REACH, R(STAFFED, grace_s=90)))
    assert len(mixed.weakening) == 1 and len(mixed.strengthening) == 1
    assert mixed.overall == "weakening" and required_approval(mixed) == "approver"


def test_diff_to_dict_is_json_ready() -> None:
    import json

    diff = diff_sites(make_site(), make_site(ARMED, R(REACH, reach_s=25.0), STAFFED,
                                             stale_after_s=20.0))
    data = diff.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["overall"] == "weakening"
    assert [c["field"] for c in data["changes"]] == ["stale_after_s", "reach_s"]
