"""Hostile files through the CLI and the event readers (issue 9).

The deep-nesting cases run the real `coverwatch` in a subprocess: on the old
code they crashed the process (exit 139), which a test in-process could not
report.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from clifork import script

from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.records import EventRecordError, RecordRules, check_record
from coverwatch.errors import EventInputError
from coverwatch.formats.eventfiles import read_events
from coverwatch.formats.sitefile import load_site

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "yard" / "site.yaml"
DEEP = 50_000

pytestmark = pytest.mark.usefixtures("forked_cli")  # each command forks (clifork.py)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [str(script()), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120,
    )


def test_check_refuses_a_deeply_nested_site_with_its_place(tmp_path: Path) -> None:
    site = tmp_path / "deep.yaml"
    site.write_text("site: deep\nposts:\n  - id: gate\n    at: " + "[" * DEEP + "\n")
    res = run("check", site)
    assert res.returncode == 2, (res.returncode, res.stderr[-500:])
    assert f"{site}:4:" in res.stderr and "posts[0].at" in res.stderr
    assert "nest more than 64 levels deep" in res.stderr


def test_plan_check_refuses_a_deeply_nested_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("plan: deep\nstart: 2030-01-01T08:00:00Z\nofficers: " + "{a: " * DEEP)
    res = run("plan", "check", SITE, plan)
    assert res.returncode == 2, (res.returncode, res.stderr[-500:])
    assert f"{plan}:3:" in res.stderr and "nest more than 64 levels deep" in res.stderr


def test_replay_refuses_a_deeply_nested_event_field(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    ok = '{"t": "2030-01-01T08:00:00Z", "kind": "duty", "officer": "A1", "on": true'
    events.write_text(f'{ok}}}\n{ok}, "extra": {"[" * DEEP}{"]" * DEEP}}}\n')
    res = run("replay", SITE, events)
    assert res.returncode == 2, (res.returncode, res.stderr[-500:])
    assert f"{events}:2:" in res.stderr and "depth limit" in res.stderr
    events.write_text(f'{ok}}}\n{ok}, "extra": {"[" * 300}{"]" * 300}}}\n')
    res = run("replay", SITE, events)
    assert res.returncode == 2, (res.returncode, res.stderr[-500:])
    assert f"{events}:2: extra: values nest more than 16 deep" in res.stderr


def test_replay_refuses_an_overlong_line_by_its_number_and_skip_bad_skips_it(
    tmp_path: Path,
) -> None:
    # Issue 19, F4: one 64 MB line took 30 s and 1.28 GB; now 1 MiB is the most read of a line.
    events = tmp_path / "events.jsonl"
    ok = '{"t": "2030-01-01T08:00:00Z", "kind": "duty", "officer": "A1", "on": true'
    events.write_text(f'{ok}}}\n{ok}, "note": "{"n" * (3 << 20)}"}}\n{ok}}}\n')
    res = run("replay", SITE, events)
    assert res.returncode == 2, (res.returncode, res.stderr[-500:])
    assert f"{events}:2:" in res.stderr and "longer than 1,048,576 bytes" in res.stderr
    res = run("replay", SITE, events, "--skip-bad")
    assert res.returncode == 0, (res.returncode, res.stderr[-500:])
    assert "skipped 1 bad line(s): 2" in res.stderr


# -- replay: plausible years and officer ids, on every path -------------------------

RULES = RecordRules.of(load_site(SITE))
GOOD: dict[str, Any] = {"t": "2030-01-01T08:00:00Z", "kind": "fix", "officer": "A1",
                        "x": 1.0, "y": 2.0}
BAD = [
    ({"t": "0001-01-01T00:00:00Z"}, "t"),
    ({"t": "9999-12-31T00:00:00Z"}, "t"),
    ({"t": -1}, "t"),
    ({"t": "2201-01-01T00:00:00Z"}, "t"),
    ({"officer": "A1\x00"}, "officer"),
    ({"officer": "A\u200b1"}, "officer"),
    ({"officer": "\u202e1A"}, "officer"),
    ({"officer": "A1\u2066"}, "officer"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_implausible_times_and_invisible_officer_characters_are_refused(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    record = {**GOOD, **change}
    with pytest.raises(EventRecordError) as e:
        check_record(record, RULES)
    assert e.value.field == field
    # The file readers (fast columnar path included) apply the same rule.
    for name in ("e.jsonl", "e.csv"):
        path = tmp_path / name
        rows = [GOOD] * 3 + [record]
        if name.endswith(".jsonl"):
            path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
        else:
            lines = ["t,kind,officer,x,y"] + [
                f"{r['t']},{r['kind']},{r['officer']},{r['x']},{r['y']}" for r in rows]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        site = load_site(SITE)
        with pytest.raises(EventInputError) as err:
            for _ in read_events(path, site, OfficerRegistry()):
                pass
        assert (err.value.line, err.value.field) == (5 if name.endswith(".csv") else 4, field)


def test_the_plausible_range_is_inclusive_of_1970_and_2200() -> None:
    for t in ("1970-01-01T00:00:00Z", "2200-12-31T23:59:59Z", 0):
        check_record({**GOOD, "t": t}, RULES)
