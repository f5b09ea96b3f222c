"""YAML aliases are bounded (issue 19, F3): a few kilobytes of aliases to aliases
must not expand to millions of nodes walked by the site and plan checkers.

On the old code each alias was walked once per reference: the bombs below loaded
(slowly, growing with the bomb) instead of being refused at the alias.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coverwatch.errors import SiteFileError
from coverwatch.formats.planfile import PlanFileError, load_plan_text
from coverwatch.formats.sitefile import load_site, load_site_text
from coverwatch.formats.yamldepth import MAX_ALIAS_NODES

ROOT = Path(__file__).resolve().parents[2]
YARD = load_site(ROOT / "examples" / "yard" / "site.yaml")


def plan_bomb(officers: int, points: int) -> str:
    """One officer's route of ``points`` aliased waypoints, aliased by the others."""
    route = ", ".join(["*p"] * points)
    lines = ["plan: bomb", "start: 2030-01-01T08:00:00Z", "hours: 1", "officers:",
             f"  - id: o0\n    patrol: {{route: &r [&p [40, 30], [80, 80], {route}], "
             "speed_mps: 1}"]
    lines += [f"  - id: o{i}\n    patrol: {{route: *r, speed_mps: 1}}" for i in range(1, officers)]
    return "\n".join(lines) + "\n"


def site_bomb(posts: int, rules: int) -> str:
    """A rule list of ``rules`` aliased rules shared by every post."""
    one = "{id: r, need: 1, within_m: 5}"
    lines = ["site: s", "posts:",
             f"  - id: p0\n    at: [0, 0]\n    rules: &rs [&r {one}, {', '.join(['*r'] * rules)}]"]
    lines += [f"  - id: p{i}\n    at: [{i}, 0]\n    rules: *rs" for i in range(1, posts)]
    return "\n".join(lines) + "\n"


def test_a_plan_whose_aliases_expand_too_far_is_refused_at_the_alias() -> None:
    text = plan_bomb(officers=100, points=2000)
    with pytest.raises(PlanFileError) as e:
        load_plan_text(text, YARD, "bomb.yaml")
    (p,) = e.value.problems
    # Officer 0 adds 2000 x 3 nodes, each alias of its route 6007: over 50 000 at the 8th.
    assert (p.path, p.line, p.field) == ("bomb.yaml", 22, "officers[8].patrol.route")
    assert p.column == 21  # the "*r"
    assert "aliases expand the document too far" in p.message
    assert f"at most {MAX_ALIAS_NODES} may be added" in p.message


def test_a_site_whose_aliases_expand_too_far_is_refused_at_the_alias() -> None:
    with pytest.raises(SiteFileError) as e:
        load_site_text(site_bomb(posts=2000, rules=100), "site.yaml")
    (p,) = e.value.problems
    assert p.path == "site.yaml" and p.field is not None and p.field.startswith("posts[")
    assert p.field.endswith("].rules") and p.line is not None and p.line > 5
    assert "aliases expand the document too far" in p.message


def test_shared_rules_within_the_limit_still_load() -> None:
    rules = "[{id: a, need: 1, within_m: 5}, {id: b, need: 2, within_m: 9}]"
    lines = ["site: s", "posts:", f"  - id: p0\n    at: [0, 0]\n    rules: &rs {rules}"]
    lines += [f"  - id: p{i}\n    at: [{i}, 0]\n    rules: *rs" for i in range(1, 400)]
    site = load_site_text("\n".join(lines) + "\n")
    assert len(site.posts) == 400 and site.post("p399").rules == site.post("p0").rules
    plan = load_plan_text(plan_bomb(officers=20, points=50), YARD)
    assert len(plan.officers) == 20


def test_a_large_document_may_alias_as_much_as_it_writes_out() -> None:
    # 6 500 posts written out (about 60 000 nodes) and 40 posts aliasing 1 401 nodes
    # each (56 040 nodes): more than the fixed allowance but no more than written.
    rules = "\n".join(f"      - {{id: r{j}, need: 1, within_m: 5}}" for j in range(200))
    lines = ["site: s", "posts:", "  - id: p0\n    at: [0, 0]\n    rules: &rs\n" + rules]
    lines += [f"  - id: q{i}\n    at: [{i}, 1]\n    rules: *rs" for i in range(1, 41)]
    lines += [f"  - id: w{i}\n    at: [{i}, 2]\n    orders: Keep watch." for i in range(6500)]
    site = load_site_text("\n".join(lines) + "\n")
    assert len(site.posts) == 6541


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(SiteFileError) as e:
        load_site_text("site: s\nposts: &a\n  - *a\n", "cyc.yaml")
    (p,) = e.value.problems
    assert (p.line, p.column, p.field) == (3, 5, "posts[0]")
    assert "alias refers to a node that contains it" in p.message
