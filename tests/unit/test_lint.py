"""Tests of the orders wording lint: vague phrases, distances and counts that
differ from the rules, the site file's ``lint`` section, and where each
warning points in the file.

The fixture tests/unit/sites/orders-vague.yaml carries its expected warnings
as comments: ``# warn: LINE:COLUMN FIELD: part of the message``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from coverwatch.domain.lint import DEFAULT_VAGUE_PHRASES, LintConfig, lint_orders
from coverwatch.domain.site import Post, Rule, Site, Walkway
from coverwatch.errors import SiteFileError
from coverwatch.formats.orderdocs import lint_problems
from coverwatch.formats.sitefile import load_site_document, load_site_text_document

SITES = Path(__file__).parent / "sites"
VAGUE = SITES / "orders-vague.yaml"
YARD = Path(__file__).parents[2] / "examples" / "yard" / "site.yaml"
WARN = re.compile(r"^# warn: (\d+):(\d+) (\S+): (.+)$", re.MULTILINE)

ARMED = Rule(id="armed-cover", need=2, within_m=25, release_m=30, capability="armed")
STAFFED = Rule(id="staffed", need=1, within_m=10, release_m=10)
LANE = Walkway("lane", ((0.0, 0.0), (10.0, 0.0)))


def site_with(orders: str, *rules: Rule) -> Site:
    post = Post(id="gate", name="Gate", at=(0.0, 0.0), orders=orders,
                rules=rules or (ARMED, STAFFED))
    return Site(id="s", name="S", posts=(post,), walkways=(LANE,))


def quotes(orders: str, *rules: Rule, config: LintConfig | None = None) -> list[str]:
    return [w.quote for w in lint_orders(site_with(orders, *rules), config or LintConfig())]


def test_fixture_warnings_point_at_the_words() -> None:
    expected = WARN.findall(VAGUE.read_text())
    assert len(expected) == 7
    problems = lint_problems(load_site_document(VAGUE))
    assert len(problems) == len(expected), [str(p) for p in problems]
    for problem, (line, column, field, message) in zip(problems, expected, strict=True):
        assert (problem.line, problem.column, problem.field) == (int(line), int(column), field)
        assert message in problem.message
        assert problem.path == str(VAGUE)


def test_example_site_is_clean() -> None:
    assert lint_problems(load_site_document(YARD)) == []


@pytest.mark.parametrize("phrase", DEFAULT_VAGUE_PHRASES)
def test_every_default_phrase_is_found(phrase: str) -> None:
    text = f"Stay at the gate and {phrase.upper()} walk the line."
    assert quotes(text) == [phrase.upper()]


def test_phrases_match_whole_words_across_line_breaks() -> None:
    assert quotes("Patrol as\n  required.") == ["as\n  required"]
    assert quotes("Keep the ungroving hedge trimmed; a surroving path.") == []


def test_distances_that_the_rules_do_not_use() -> None:
    assert quotes("Stay within 50 m.") == ["50 m"]
    assert quotes("Stay within 50m or 40 metres or nine meters.") == ["50m", "40 metres",
                                                                      "nine meters"]
    # Distances the rules do use: within_m and release_m of any rule of the post.
    assert quotes("Stay within 25 m; you count until 30 metres; 10 m for the gate.") == []
    assert quotes("It takes 5 min to walk 2 miles.") == []


def test_counts_that_the_rules_do_not_need() -> None:
    assert quotes("One armed officer stays here.") == ["One armed officer"]
    assert quotes("1 officer stays here.") == []  # the staffed rule needs 1
    assert quotes("3 officers stay here.") == ["3 officers"]
    assert quotes("Two armed officers stay here.") == []
    assert quotes("one officer stays here.", ARMED) == ["one officer"]
    assert quotes("Ask one of the officers; two of the officers.") == []


def test_posts_without_rules_or_distances() -> None:
    assert quotes("Two officers within 20 m.", Rule(
        id="r", need=2, within_m=float("inf"), release_m=float("inf"), reach_s=10)) == ["20 m"]
    bare = Post(id="hut", name="Hut", at=(0.0, 0.0), rules=(), orders="Two officers, 5 m.")
    warnings = lint_orders(Site(id="s", name="S", posts=(bare,)))
    assert [w.quote for w in warnings] == ["Two officers", "5 m"]
    assert all("no cover rule" in w.message for w in warnings)


def test_configured_phrases() -> None:
    config = LintConfig(vague_phrases=("keep an eye",))
    assert quotes("Roving; keep an   eye on it.", config=config) == ["keep an   eye"]
    warnings = lint_orders(site_with("Keep an eye."), config)
    assert warnings[0].field == "posts[0].orders"
    assert (warnings[0].start, warnings[0].end) == (0, len("Keep an eye"))


BASE_SITE = """\
site: s
posts:
  - id: gate
    at: [0, 0]
    orders: Walk a short patrol and keep an eye out.
"""


def test_site_file_lint_section_replaces_or_extends_the_defaults() -> None:
    default = load_site_text_document(BASE_SITE)
    assert default.lint.vague_phrases == DEFAULT_VAGUE_PHRASES
    replaced = load_site_text_document(BASE_SITE + "lint:\n  vague_phrases: [Keep An  Eye]\n")
    assert replaced.lint.vague_phrases == ("keep an eye",)
    assert [w.quote for w in lint_orders(replaced.site, replaced.lint)] == ["keep an eye"]
    extended = load_site_text_document(
        BASE_SITE + "lint:\n  extra_vague_phrases: [keep an eye, roving]\n")
    assert extended.lint.vague_phrases == (*DEFAULT_VAGUE_PHRASES, "keep an eye")
    assert [w.quote for w in lint_orders(extended.site, extended.lint)] == [
        "short patrol", "keep an eye"]


@pytest.mark.parametrize(("section", "where", "message"), [
    ("lint: []\n", "6:7 lint", "expected a mapping"),
    ("lint:\n  vague_phrase: [x]\n", "7:3 lint.vague_phrase", "did you mean 'vague_phrases'"),
    ("lint:\n  vague_phrases: roving\n", "7:18 lint.vague_phrases", "expected a list"),
    ("lint:\n  vague_phrases: ['  ']\n", "7:19 lint.vague_phrases[0]", "must not be empty"),
    ("lint:\n  extra_vague_phrases: [3]\n", "7:25 lint.extra_vague_phrases[0]",
     "expected text"),
])
def test_bad_lint_sections(section: str, where: str, message: str) -> None:
    with pytest.raises(SiteFileError) as caught:
        load_site_text_document(BASE_SITE + section, "site.yaml")
    [problem] = caught.value.problems
    assert f"{problem.line}:{problem.column} {problem.field}" == where
    assert message in problem.message


def test_warning_falls_back_to_the_value_start_when_the_words_are_escaped() -> None:
    text = BASE_SITE.replace("orders: Walk a short patrol and keep an eye out.",
                             'orders: "Walk a short\\u0020patrol."')
    doc = load_site_text_document(text, "site.yaml")
    [problem] = lint_problems(doc)
    assert (problem.line, problem.column) == doc.locations["posts[0].orders"]


def test_same_phrase_twice_points_at_each_occurrence() -> None:
    text = BASE_SITE.replace("orders: Walk a short patrol and keep an eye out.",
                             "orders: |\n      Roving.\n      Then roving again.")
    doc = load_site_text_document(text, "site.yaml")
    assert [(p.line, p.column) for p in lint_problems(doc)] == [(6, 7), (7, 12)]


def test_lint_is_per_post() -> None:
    site = site_with("Stay within 25 m.")
    other = dataclasses.replace(site.posts[0], id="other", rules=(STAFFED,))
    site = dataclasses.replace(site, posts=(site.posts[0], other))
    warnings = lint_orders(site)
    assert [(w.post_id, w.quote) for w in warnings] == [("other", "25 m")]
