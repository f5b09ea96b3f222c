"""Fuzzing the loaders of untrusted files (issue 9): site files, plan files and
event files (JSONL, CSV).

Each example is a real file from examples/yard mutated by hypothesis: bytes
inserted, deleted or repeated, numbers made enormous, collections nested
deeply. The loader must either return a valid result or raise its own error
naming the file (and, where there is one, the line and field); never another
exception, a crash or a traceback. Bounded examples and a fixed seed
(derandomize) keep the run short and repeatable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coverwatch.domain.events import OfficerRegistry
from coverwatch.errors import EventInputError, SiteFileError
from coverwatch.formats.eventfiles import read_events
from coverwatch.formats.planfile import load_plan_text
from coverwatch.formats.sitefile import load_site, load_site_text

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard"
SITE_TEXT = (YARD / "site.yaml").read_text(encoding="utf-8")
PLAN_TEXT = (YARD / "plan-roving.yaml").read_text(encoding="utf-8")
EVENT_LINES = (YARD / "roving-patrol.jsonl").read_text(encoding="utf-8").splitlines()[:40]
SITE = load_site(YARD / "site.yaml")

FUZZ = settings(max_examples=100, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Pieces that have broken parsers before: deep openers, huge numbers, odd characters.
NASTY = st.sampled_from([
    "[" * 5000, "{a: " * 3000, "- " * 200, "9" * 400, "-1e400", "0x" + "f" * 300, "\x00",
    "\u202e", "\u200b", "\ufeff", "&a [*a, *a]", "*a", "!!python/object:os.system", "'",
    '"', "\t", "\n  ", ": ", "---\n", "...\n", "%YAML 1.1\n", "? ", "|\n", "null", "~",
    "2030-13-45T99:99:99Z", "nan", ".inf", "true", "[]", "{}", ",", "#",
])


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few random edits."""
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "repeat", "nasty"]))
        if edit == "insert":
            text = text[:at] + draw(st.text(max_size=20)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 200)):]
        elif edit == "repeat":
            text = text[:at] + text[at:at + draw(st.integers(1, 80))] * draw(
                st.integers(2, 50)) + text[at:]
        else:
            text = text[:at] + draw(NASTY) + text[at:]
    return text


def _assert_names_the_file(e: SiteFileError | EventInputError, path: str) -> None:
    problems = e.problems if isinstance(e, SiteFileError) else [e.problem]
    assert problems
    for p in problems:
        assert p.path == path
        assert p.message
        assert str(p).startswith(path)
        if p.line is not None:
            assert p.line >= 1


@FUZZ
@given(mutated(SITE_TEXT))
# Crashes found before the fix: libyaml's segfault, an int beyond any float.
@example(SITE_TEXT.replace("at: [0, 0]", "at: " + "[" * 50_000, 1))
@example(SITE_TEXT.replace("at: [0, 0]", f"at: [{'9' * 400}, 0]", 1))
def test_site_loader_returns_a_site_or_names_the_problem(text: str) -> None:
    # Named as if beside the example, so the plan image it names is found.
    path = str(YARD / "fuzz.yaml")
    try:
        site = load_site_text(text, path)
    except SiteFileError as e:
        _assert_names_the_file(e, path)
    else:
        assert site.posts


@FUZZ
@given(mutated(PLAN_TEXT))
@example(PLAN_TEXT + "\nextra: " + "{a: " * 50_000)
@example(PLAN_TEXT.replace("start: 2026-03-22T13:00:00Z", "start: 0x" + "f" * 300, 1))
def test_plan_loader_returns_a_plan_or_names_the_problem(text: str) -> None:
    try:
        plan = load_plan_text(text, SITE, "plan.yaml")
    except SiteFileError as e:
        _assert_names_the_file(e, "plan.yaml")
    else:
        assert plan.officers


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
@FUZZ
@given(data=st.data())
def test_event_reader_returns_events_or_names_the_line(
    tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject
) -> None:
    if kind == "jsonl":
        text = "\n".join(EVENT_LINES) + "\n"
    else:  # the fixes of the example as CSV
        import orjson

        rows = [orjson.loads(line) for line in EVENT_LINES]
        text = "t,kind,officer,x,y\n" + "".join(
            f"{r['t']},fix,{r['officer']},{r['x']},{r['y']}\n" for r in rows if r["kind"] == "fix")
    text = data.draw(mutated(text))
    path = tmp_path_factory.mktemp("fuzz") / f"events.{kind}"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    try:
        for batch in read_events(path, SITE, OfficerRegistry(), format=kind):
            assert len(batch) >= 0
    except EventInputError as e:
        _assert_names_the_file(e, str(path))
