"""Tests of the site-file loader: valid files, every kind of problem, and where
each problem is reported.

The invalid fixtures in tests/unit/sites/bad-*.yaml carry their expected
problems as comments: ``# expect: LINE:COLUMN FIELD: part of the message``.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coverwatch.domain import LatLon, Site
from coverwatch.domain.alerts import EscalationLevel, EscalationPolicy
from coverwatch.domain.roles import ROLES
from coverwatch.errors import Problem, SiteFileError
from coverwatch.formats.sitefile import (
    WrittenLevel,
    load_site,
    load_site_document,
    load_site_text,
    load_site_text_document,
)
from coverwatch.server.policies import policy_from, sos_policy_from

SITES = Path(__file__).parent / "sites"
DOCS = Path(__file__).parents[2] / "docs" / "site-file.md"
BAD_FILES = sorted(SITES.glob("bad-*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+) (.+)$", re.MULTILINE)


def problems_of(text: str, path: str = "site.yaml") -> list[Problem]:
    with pytest.raises(SiteFileError) as caught:
        load_site_text(text, path)
    assert caught.value.problems, "a SiteFileError must carry at least one problem"
    return caught.value.problems


def only_problem(text: str) -> Problem:
    problems = problems_of(text)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# -- valid files -------------------------------------------------------------


def test_valid_file_loads_every_field() -> None:
    site = load_site(SITES / "valid.yaml")

    assert site.id == "demo-yard"
    assert site.name == "Demo Yard (fictional)"
    assert site.origin == LatLon(51.5, -0.12)
    assert site.stale_after_s == 45.0
    assert site.timezone == "Europe/London"
    assert dict(site.flags) == {"open-hours": False, "lockdown": True}
    assert [p.id for p in site.posts] == ["main-gate", "yard"]
    assert site.gates == ("main-gate",)

    gate = site.post("main-gate")
    assert gate.name == "Main Gate"
    assert gate.at == (0.0, 0.0)
    assert gate.area is None
    assert gate.orders.startswith("Remain within 25 m of the gate")
    armed, staffed = gate.rules
    assert (armed.id, armed.need, armed.capability) == ("armed-cover", 2, "armed")
    assert (armed.within_m, armed.release_m, armed.grace_s) == (25.0, 30.0, 30.0)
    assert armed.when == "open-hours"
    assert not armed.when_gate_open
    assert staffed.when_gate_open
    assert staffed.release_m == staffed.within_m == 10.0

    yard = site.post("yard")
    assert yard.at is None
    assert yard.area == ((10.0, 10.0), (60.0, 10.0), (60.0, 40.0), (10.0, 40.0))
    assert yard.name == "yard"  # defaults to the id
    assert isinstance(site.posts[0].rules[0].need, int)


def test_minimal_file_gets_the_documented_defaults() -> None:
    site = load_site(SITES / "minimal.yaml")

    assert site == Site(
        id="tiny",
        name="tiny",
        posts=site.posts,
        stale_after_s=30.0,
        flags={},
        origin=None,
        timezone="UTC",
    )
    (door,) = site.posts
    assert (door.id, door.name, door.at, door.gate, door.orders, door.rules) == (
        "door", "door", (3.5, -2.0), False, "", ()
    )


def test_text_and_file_loaders_agree() -> None:
    path = SITES / "valid.yaml"
    assert load_site_text(path.read_text(encoding="utf-8")) == load_site(path)
    assert load_site(str(path)) == load_site(path)


def test_document_keeps_escalation_source_and_locations() -> None:
    path = SITES / "valid.yaml"
    document = load_site_document(path)

    assert document.site == load_site(path)
    assert document.escalation == (
        WrittenLevel(0.0, ("supervisor",)),
        WrittenLevel(120.0, ("duty-inspector", "https://hooks.example.invalid/coverwatch")),
    )
    assert document.source == path.read_text(encoding="utf-8")
    assert document.path == str(path)
    # 1-based (line, column) of values, for tools that lint a valid file.
    assert document.locations["site"] == (2, 7)
    assert document.locations["posts[0].rules[0].within_m"] == (19, 19)
    assert document.locations["posts[1].area"] == (28, 11)


def test_escalation_is_optional() -> None:
    document = load_site_text_document((SITES / "minimal.yaml").read_text(encoding="utf-8"))
    assert document.escalation == ()
    assert document.path == "<string>"


def test_document_carries_the_domain_escalation_policies() -> None:
    document = load_site_document(SITES / "valid.yaml")
    hook = "https://hooks.example.invalid/coverwatch"

    # A bare role name gets "role:", any other bare name "user:"; URLs stay as written.
    assert document.policy == EscalationPolicy((
        EscalationLevel(0.0, ("role:supervisor",)),
        EscalationLevel(120.0, ("user:duty-inspector", hook)),
    ))
    # No 'sos' levels: a device alarm reaches every default level at once.
    assert document.sos_policy == EscalationPolicy((
        EscalationLevel(0.0, ("role:supervisor",)),
        EscalationLevel(0.0, ("user:duty-inspector", hook)),
    ))
    assert policy_from(document) == document.policy
    assert sos_policy_from(document) == document.sos_policy


@pytest.mark.parametrize("target", ["role:", "user:", "role: supervisor", "user:"])
def test_a_target_the_policy_cannot_take_is_a_problem_of_the_file(target: str) -> None:
    text = ("site: s\nposts:\n  - id: p\n    at: [0, 0]\nescalation:\n"
            f"  - after_s: 0\n    notify: [supervisor, \"{target}\"]\n")
    with pytest.raises(SiteFileError) as caught:
        load_site_text_document(text, "site.yaml")
    [problem] = caught.value.problems
    assert (problem.path, problem.line, problem.field) == \
        ("site.yaml", 7, "escalation[0].notify[1]")
    assert repr(target) in problem.message


def test_the_policies_are_built_when_the_file_is_loaded() -> None:
    document = load_site_document(SITES / "valid.yaml")
    assert "policy" in {f.name for f in fields(document)}
    assert document.policy is document.policy  # built once, not on every read


def test_sos_levels_make_the_device_alarm_policy() -> None:
    roles = ", ".join(ROLES)
    text = ("site: s\nposts:\n  - id: p\n    at: [0, 0]\nescalation:\n"
            "  default:\n    - {after_s: 30, notify: [user:ann, role:ops]}\n"
            f"  sos:\n    - {{after_s: 0, notify: [{roles}]}}\n"
            "    - {after_s: 60, notify: ['mailto://ops@example.org']}\n")
    document = load_site_text_document(text)

    assert document.policy == EscalationPolicy((EscalationLevel(30.0, ("user:ann", "role:ops")),))
    assert document.sos_policy == EscalationPolicy((
        EscalationLevel(0.0, tuple(f"role:{role}" for role in ROLES)),
        EscalationLevel(60.0, ("mailto://ops@example.org",)),
    ))


def test_a_closed_ring_means_the_same_polygon() -> None:
    text = "site: s\nposts:\n  - id: p\n    area: [[0, 0], [4, 0], [4, 3], [0, 0]]\n"
    assert load_site_text(text).posts[0].area == ((0.0, 0.0), (4.0, 0.0), (4.0, 3.0))


def test_yaml_aliases_may_share_rules_between_posts() -> None:
    text = (
        "site: s\n"
        "posts:\n"
        "  - id: a\n    at: [0, 0]\n    rules: &standard [{id: r, need: 1, within_m: 5}]\n"
        "  - id: b\n    at: [9, 9]\n    rules: *standard\n"
    )
    site = load_site_text(text)
    assert site.post("a").rules == site.post("b").rules


def test_yaml_1_1_booleans_are_booleans() -> None:
    text = "site: s\nflags: {open: on}\nposts: [{id: p, at: [0, 0], gate: yes}]\n"
    site = load_site_text(text)
    assert site.flags == {"open": True}
    assert site.posts[0].gate is True


# -- invalid fixtures --------------------------------------------------------


def test_every_bad_fixture_declares_its_problems() -> None:
    assert len(BAD_FILES) >= 9
    for path in BAD_FILES:
        assert EXPECT.search(path.read_text(encoding="utf-8")), path.name


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_fixture_reports_exactly_the_expected_problems(path: Path) -> None:
    expected = [
        (int(m.group(1)), int(m.group(2)), m.group(3))
        for m in EXPECT.finditer(path.read_text(encoding="utf-8"))
    ]
    with pytest.raises(SiteFileError) as caught:
        load_site(path)
    problems = caught.value.problems

    assert all(p.path == str(path) for p in problems)
    unmatched = list(problems)
    for line, column, text in expected:
        for problem in unmatched:
            field = f"{problem.field}: " if problem.field else ""
            if (
                (problem.line, problem.column) == (line, column)
                and text.startswith(field)
                and text.removeprefix(field) in problem.message
            ):
                unmatched.remove(problem)
                break
        else:
            got = "\n".join(str(p) for p in problems)
            pytest.fail(f"no problem {line}:{column} {text!r}; got:\n{got}")
    assert not unmatched, [str(p) for p in unmatched]


# -- specific problems -------------------------------------------------------


def test_problem_text_names_file_line_column_and_field() -> None:
    text = "site: s\nposts:\n  - id: p\n    at: [0, 0]\n    rules:\n"
    text += "      - {id: r, need: 1, withn_m: 5}\n"
    problems = problems_of(text, "yard.yaml")
    assert [str(p) for p in problems] == [
        "yard.yaml:6:9: posts[0].rules[0].within_m: missing required key 'within_m'",
        "yard.yaml:6:26: posts[0].rules[0].withn_m: unknown key 'withn_m'; "
        "did you mean 'within_m'?",
    ]


def test_problems_are_in_file_order() -> None:
    # `when` is checked against flags declared after the posts; still sorted.
    text = (
        "site: s\n"
        "posts: [{id: p, at: [0, 0], rules: [{id: r, need: 1, within_m: 1, when: nope}]}]\n"
        "stale_after_s: -1\n"
        "name: 5\n"
        "flags: {yes-flag: true}\n"
    )
    problems = problems_of(text)
    assert [(p.line, p.field) for p in problems] == [
        (2, "posts[0].rules[0].when"),
        (3, "stale_after_s"),
        (4, "name"),
    ]


def test_column_is_one_based_and_points_at_the_value() -> None:
    problem = only_problem("site: s\nposts:\n  - id: p\n    at: [0, zero]\n")
    assert (problem.line, problem.column, problem.field) == (4, 13, "posts[0].at[1]")


def test_need_must_be_a_whole_number() -> None:
    base = "site: s\nposts: [{{id: p, at: [0, 0], rules: [{{id: r, need: {}, within_m: 1}}]}}]\n"
    for bad in ("2.5", "2.0", "true", "'2'", "null", "[2]"):
        problem = only_problem(base.format(bad))
        assert problem.field == "posts[0].rules[0].need"
        assert "whole number" in problem.message
    assert load_site_text(base.format("3")).posts[0].rules[0].need == 3


def test_release_may_equal_within() -> None:
    text = "site: s\nposts: [{id: p, at: [0, 0], rules: [{id: r, need: 1, within_m: 4, "
    text += "release_m: 4}]}]\n"
    assert load_site_text(text).posts[0].rules[0].release_m == 4.0


def test_at_least_one_post() -> None:
    problem = only_problem("site: s\nposts: []\n")
    assert (problem.line, problem.field) == (2, "posts")
    assert "at least one post" in problem.message


def test_top_level_must_be_a_mapping() -> None:
    problem = only_problem("- site: s\n")
    assert (problem.line, problem.column, problem.field) == (1, 1, None)
    assert "expected a mapping, got a list" in problem.message


def test_keys_must_be_text() -> None:
    problem = only_problem("site: s\nposts: [{id: p, at: [0, 0]}]\n1: x\n")
    assert (problem.line, problem.column) == (3, 1)
    assert "a key must be text" in problem.message


def test_merge_keys_are_refused_clearly() -> None:
    problem = only_problem("site: s\nposts: [{id: p, at: [0, 0], <<: {gate: true}}]\n")
    assert (problem.line, problem.column) == (2, 29)
    assert "merge keys" in problem.message


def test_quoted_numbers_in_ids_need_quotes() -> None:
    problem = only_problem("site: 2024\nposts: [{id: p, at: [0, 0]}]\n")
    assert problem.field == "site"
    assert "quote it" in problem.message
    assert load_site_text("site: '2024'\nposts: [{id: p, at: [0, 0]}]\n").id == "2024"


# -- unreadable files --------------------------------------------------------


def test_missing_file() -> None:
    path = SITES / "no-such-file.yaml"
    with pytest.raises(SiteFileError) as caught:
        load_site(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}: no such file"]


def test_directory_instead_of_file() -> None:
    with pytest.raises(SiteFileError) as caught:
        load_site(SITES)
    assert "is a directory" in str(caught.value)


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes(b"site: s\nname: caf\xe9\nposts: []\n")
    with pytest.raises(SiteFileError) as caught:
        load_site(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (2, 10)
    assert "not valid UTF-8" in problem.message


def test_invalid_utf8_column_counts_characters(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes("site: s\nname: Café ".encode() + b"\xff\n")
    with pytest.raises(SiteFileError) as caught:
        load_site(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (2, 12)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes(b"\xef\xbb\xbfsite: s\nposts: [{id: p, at: [0, 0]}]\n")
    assert load_site(path).id == "s"


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    problem = only_problem(text)
    assert "empty" in problem.message


def test_yaml_syntax_error_has_parser_position() -> None:
    problem = only_problem("site: s\nposts:\n  - id: p\n    at: [0, 0\n  - id: q\n")
    assert (problem.line, problem.column, problem.field) == (5, 7, None)
    assert problem.message.startswith("YAML syntax error: expected ',' or ']', but got ':'")


def test_tab_indentation_is_a_syntax_error() -> None:
    problem = only_problem("site: s\nposts:\n\t- id: p\n")
    assert (problem.line, problem.column) == (3, 1)
    assert "YAML syntax error" in problem.message


def test_two_documents_are_refused() -> None:
    problem = only_problem("site: a\n---\nsite: b\n")
    assert (problem.line, problem.column) == (2, 1)
    assert "another document" in problem.message


def test_control_character_is_located() -> None:
    problem = only_problem('site: s\nname: "a\x07b"\n')
    assert (problem.line, problem.column) == (2, 9)
    assert "U+0007" in problem.message


# -- robustness --------------------------------------------------------------

VALID_TEXT = (SITES / "valid.yaml").read_text(encoding="utf-8")


def load_or_problems(text: str) -> Site | list[Problem]:
    """The loader's answer; any exception other than SiteFileError escapes."""
    try:
        return load_site_text(text, "fuzz.yaml")
    except SiteFileError as e:
        return e.problems


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(0, len(VALID_TEXT)),
    length=st.integers(0, 8),
    insert=st.text(alphabet="[]{}:,-#&*!|>'\"\t\n 0aZ.~<", max_size=4),
)
def test_edited_valid_file_gives_a_site_or_located_problems(
    position: int, length: int, insert: str
) -> None:
    text = VALID_TEXT[:position] + insert + VALID_TEXT[position + length :]
    answer = load_or_problems(text)
    if isinstance(answer, list):
        assert answer
        for problem in answer:
            assert problem.path == "fuzz.yaml"
            assert problem.message
            assert problem.line is None or 1 <= problem.line <= text.count("\n") + 2
    else:
        assert isinstance(answer, Site)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_never_escapes_as_another_exception(text: str) -> None:
    answer = load_or_problems(text)
    assert isinstance(answer, Site) or answer


# -- the documentation -------------------------------------------------------


def doc_block(marker: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/site-file.md has no block marked {marker}"
    return match.group(1)


def test_documented_complete_example_is_valid() -> None:
    document = load_site_text_document(doc_block("complete-example"), "site.yaml")
    assert len(document.site.posts) >= 2
    assert document.escalation


def test_documented_error_example_matches_the_real_output() -> None:
    with pytest.raises(SiteFileError) as caught:
        load_site_text(doc_block("error-example"), "site.yaml")
    # The document shows what `coverwatch check` prints: each problem after "error ".
    output = [line.removeprefix("error ") for line in doc_block("error-output").splitlines()
              if line]
    assert [str(p) for p in caught.value.problems] == output
