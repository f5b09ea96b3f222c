"""End-to-end tests of the `coverwatch` console script: `check` and `replay`.

Each test runs the command as a process of its own (forked from one that has
imported coverwatch: clifork.py; test_docs_examples runs the installed script
itself) and checks its exit code, stdout and stderr, on the bundled Harbour
Yard example and on broken copies of it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from clifork import script

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
YARD = ROOT / "examples" / "yard"
SITE = YARD / "site.yaml"
EVENTS = YARD / "roving-patrol.jsonl"
COLUMNS = ["t", "kind", "officer", "x", "y", "lat", "lon", "accuracy_m", "post", "open", "flag",
           "on", "capabilities"]  # fmt: skip
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
pytestmark = pytest.mark.usefixtures("forked_cli")  # each command forks (clifork.py)
LAPSE_KEYS = {"post", "rule", "start", "end", "alert_at", "min_cover"}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the console script; a wide, colourless terminal keeps the output parseable."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [str(script()), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def lapses_of(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def example_lines() -> list[str]:
    return EVENTS.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def scenario() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_scenario", YARD / "make_scenario.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_csv(path: Path) -> Path:
    """The example converted to the CSV layout of the event format."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for line in example_lines():
            rec = json.loads(line)
            row = []
            for col in COLUMNS:
                value = rec.get(col)
                if value is None:
                    row.append("")
                elif isinstance(value, bool):
                    row.append("true" if value else "false")
                elif isinstance(value, list):
                    row.append(";".join(value))
                else:
                    row.append(str(value))
            out.writerow(row)
    return path


def example_parquet(path: Path) -> Path:
    """The example converted to Parquet with pyarrow: one column per field."""
    recs = [json.loads(line) for line in example_lines()]
    types = {
        "t": pa.timestamp("us", "UTC"), "kind": pa.string(), "officer": pa.string(),
        "x": pa.float64(), "y": pa.float64(), "accuracy_m": pa.float64(),
        "post": pa.string(), "open": pa.bool_(), "flag": pa.string(), "on": pa.bool_(),
        "capabilities": pa.list_(pa.string()),
    }  # fmt: skip
    data = {
        name: [when(r["t"]) if name == "t" else r.get(name) for r in recs] for name in types
    }
    pq.write_table(pa.table(data, schema=pa.schema(types)), path, row_group_size=1000)
    return path


# --------------------------------------------------------------------------
# check


def test_check_accepts_the_example() -> None:
    res = run("check", SITE)
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(SITE.read_text())
    rules = sum(len(post["rules"]) for post in doc["posts"])
    assert f"site harbour-yard, {len(doc['posts'])} posts, {rules} rules" in res.stdout


def test_check_reports_each_problem_with_place_field_and_hint(tmp_path: Path) -> None:
    site = tmp_path / "bad.yaml"
    text = SITE.read_text()
    text = text.replace("stale_after_s: 30", "stale_afer_s: 30")
    text = text.replace("        within_m: 25\n", "        withn_m: 25\n", 1)
    site.write_text(text)
    (tmp_path / "yard-plan.svg").write_bytes((SITE.parent / "yard-plan.svg").read_bytes())
    lines = text.splitlines()
    stale_line = next(i for i, s in enumerate(lines, 1) if s.startswith("stale_afer_s"))
    within_line = next(i for i, s in enumerate(lines, 1) if "withn_m" in s)

    res = run("check", site)
    assert res.returncode == 2
    problems = [s for s in res.stderr.splitlines() if s.strip()]
    # One problem per line: the unknown key and, for the rule, the misspelt key
    # plus the required `within_m` it leaves missing (if reported) - no others.
    assert 2 <= len(problems) <= 3, res.stderr
    stale = next(s for s in problems if "stale_afer_s" in s)
    assert f"{site}:{stale_line}:1:" in stale
    assert "did you mean 'stale_after_s'" in stale
    within = next(s for s in problems if "withn_m" in s)
    assert f"{site}:{within_line}:9:" in within
    assert "posts[0].rules[0].withn_m" in within
    assert "did you mean 'within_m'" in within
    assert res.stdout == ""


def test_check_reports_yaml_syntax_errors_with_a_position(tmp_path: Path) -> None:
    site = tmp_path / "syntax.yaml"
    site.write_text("site: demo\nposts:\n  - id: gate\n    at: [0, 0\n  - id: door\n")
    res = run("check", site)
    assert res.returncode == 2
    assert re.search(rf"{re.escape(str(site))}:\d+:\d+:", res.stderr), res.stderr


def test_check_on_a_missing_file_exits_2() -> None:
    res = run("check", YARD / "no-such-site.yaml")
    assert res.returncode == 2
    assert "no-such-site.yaml" in res.stderr


# --------------------------------------------------------------------------
# replay: the example


def test_example_file_is_what_the_scenario_script_writes() -> None:
    made = [json.dumps(ev, separators=(",", ":")) for ev in scenario().events()]
    assert made == example_lines()


def test_replay_summary_shows_the_main_gate_lapses_and_alerts() -> None:
    res = run("replay", SITE, EVENTS)
    assert res.returncode == 0, res.stderr
    row = next(s for s in res.stdout.splitlines() if "main-gate" in s and "armed-cover" in s)
    cells = [c.strip() for c in re.split(r"[│|]", row) if c.strip()]
    # Post, Rule, Need, Lapses, Alerts, Longest lapse, Cover %
    assert cells[:3] == ["main-gate", "armed-cover", "2"]
    assert int(cells[3]) >= 5 and int(cells[4]) >= 5
    assert float(cells[6]) < 50.0
    assert re.search(r"ALERT main-gate/armed-cover: lapse from 2026-03-22T13:00:40Z", res.stdout)


def _expected_first_armed_lapse() -> tuple[datetime, datetime]:
    """main-gate/armed-cover's first lapse, worked out from the scenario itself.

    Open hours last the whole scenario, both armed officers are on duty and fix
    every 5 s (well inside the 30 s freshness), so cover changes only at fix
    times: count the armed officers "in" with the rule's hysteresis
    (d = distance + accuracy; in at d <= 25, out at d > 30, else unchanged).
    """
    sc = scenario()
    fixes: dict[str, dict[datetime, tuple[float, float, float]]] = {"A1": {}, "A2": {}}
    for ev in sc.events():
        if ev["kind"] == "fix" and ev["officer"] in fixes:
            fixes[str(ev["officer"])][when(str(ev["t"]))] = (
                float(ev["x"]), float(ev["y"]), float(ev["accuracy_m"]),  # type: ignore[arg-type]
            )  # fmt: skip
    member = dict.fromkeys(fixes, False)
    start: datetime | None = None
    for t in sorted(fixes["A1"]):
        for officer, by_time in fixes.items():
            x, y, acc = by_time[t]
            d = math.hypot(x, y) + acc
            if d <= 25:
                member[officer] = True
            elif d > 30:
                member[officer] = False
        count = sum(member.values())
        if start is None and count < 2:
            start = t
        elif start is not None and count == 2:
            return start, t
    raise AssertionError("the scenario has no complete armed-cover lapse")


def test_replay_json_to_stdout_has_one_exact_object_per_lapse() -> None:
    res = run("replay", SITE, EVENTS, "--json", "-")
    assert res.returncode == 0, res.stderr
    lapses = lapses_of(res.stdout)  # the summary goes to stderr, so stdout is pure JSONL
    assert lapses
    for lp in lapses:
        assert set(lp) == LAPSE_KEYS
        for key in ("start", "end", "alert_at"):
            assert lp[key] is None or ISO_Z.match(str(lp[key])), lp
        assert isinstance(lp["min_cover"], int)
    assert "armed-cover" in res.stderr  # the summary table

    armed = [lp for lp in lapses if (lp["post"], lp["rule"]) == ("main-gate", "armed-cover")]
    first = armed[0]
    start, end = _expected_first_armed_lapse()
    # By hand: A2 (2 m east, 1 m south of A1, accuracy 5) is 25.08 m out at 40 s: 30.08 > 30.
    assert start == datetime(2026, 3, 22, 13, 0, 40, tzinfo=UTC)
    assert when(str(first["start"])) == start
    assert when(str(first["end"])) == end
    assert when(str(first["alert_at"])) == start + timedelta(seconds=60)  # grace_s: 60
    assert when(str(first["end"])) > when(str(first["alert_at"]))
    assert first["min_cover"] == 0
    # The patrol loop (~404 m at 0.6 m/s) brings them back roughly every 11 minutes.
    assert 9 <= len(armed) <= 11
    assert all(lp["alert_at"] is not None for lp in armed)


def test_replay_json_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "lapses.jsonl"
    res = run("replay", SITE, EVENTS, "--json", out)
    assert res.returncode == 0, res.stderr
    assert "armed-cover" in res.stdout  # the summary stays on stdout
    from_file = lapses_of(out.read_text())
    assert from_file == lapses_of(run("replay", SITE, EVENTS, "--json", "-").stdout)
    assert from_file


def test_replay_until_cuts_the_window_and_leaves_the_lapse_open() -> None:
    res = run("replay", SITE, EVENTS, "--json", "-", "--until", "2026-03-22T13:05:00Z")
    assert res.returncode == 0, res.stderr
    lapses = lapses_of(res.stdout)
    armed = [lp for lp in lapses if lp["rule"] == "armed-cover"]
    assert armed == [
        {"post": "main-gate", "rule": "armed-cover", "start": "2026-03-22T13:00:40Z",
         "end": None, "alert_at": "2026-03-22T13:01:40Z", "min_cover": 0},
    ]  # fmt: skip
    assert all(when(str(lp["start"])) <= when("2026-03-22T13:05:00Z") for lp in lapses)
    assert "2026-03-22T13:05:00Z" in res.stderr  # the window in the summary title


def test_replay_until_before_the_grace_ends_gives_no_alert() -> None:
    res = run("replay", SITE, EVENTS, "--json", "-", "--until", "2026-03-22T13:01:30Z")
    assert res.returncode == 0, res.stderr
    armed = [lp for lp in lapses_of(res.stdout) if lp["rule"] == "armed-cover"]
    assert len(armed) == 1
    assert armed[0]["end"] is None and armed[0]["alert_at"] is None


def test_replay_rejects_a_bad_until() -> None:
    res = run("replay", SITE, EVENTS, "--until", "half past one")
    assert res.returncode == 2
    assert "--until" in res.stderr


# --------------------------------------------------------------------------
# replay: bad input


def test_malformed_jsonl_line_stops_the_replay_naming_line_and_field(tmp_path: Path) -> None:
    lines = example_lines()
    lines[99] = lines[99].replace('"x":', '"x":"abc","ignored":', 1)  # line 100
    res = run("replay", SITE, write_lines(tmp_path / "bad.jsonl", lines), "--json", "-")
    assert res.returncode == 2
    assert "bad.jsonl:100:" in res.stderr, res.stderr
    assert "x: expected a number" in res.stderr
    assert res.stdout == ""


def test_truncated_jsonl_line_is_named(tmp_path: Path) -> None:
    lines = example_lines()
    lines[199] = lines[199][:40]  # line 200
    res = run("replay", SITE, write_lines(tmp_path / "cut.jsonl", lines))
    assert res.returncode == 2
    assert "cut.jsonl:200:" in res.stderr
    assert "invalid JSON" in res.stderr


def test_skip_bad_reports_count_and_lines_and_still_replays(tmp_path: Path) -> None:
    lines = example_lines()
    lines[99] = lines[99].replace('"kind":"fix"', '"kind":"fax"', 1)  # line 100
    lines[1233] = lines[1233][:40]  # line 1234
    path = write_lines(tmp_path / "bad.jsonl", lines)
    res = run("replay", SITE, path, "--skip-bad", "--json", "-")
    assert res.returncode == 0, res.stderr
    assert "skipped 2 bad line(s): 100, 1234" in res.stderr
    assert lapses_of(res.stdout)


def test_malformed_csv_line_stops_the_replay_and_skip_bad_skips_it(tmp_path: Path) -> None:
    good = example_csv(tmp_path / "good.csv")
    rows = good.read_text().splitlines()
    # File line 101 (the header is line 1): a fix with a word for x.
    assert rows[100].split(",")[1] == "fix"
    cells = rows[100].split(",")
    cells[3] = "eighty"
    rows[100] = ",".join(cells)
    bad = write_lines(tmp_path / "bad.csv", rows)

    res = run("replay", SITE, bad, "--json", "-")
    assert res.returncode == 2
    assert "bad.csv:101:" in res.stderr and "x: expected a number" in res.stderr

    res = run("replay", SITE, bad, "--skip-bad", "--json", "-")
    assert res.returncode == 0, res.stderr
    assert "skipped 1 bad line(s): 101" in res.stderr


def test_csv_and_parquet_replays_equal_the_jsonl_replay(tmp_path: Path) -> None:
    expected = run("replay", SITE, EVENTS, "--json", "-")
    assert expected.returncode == 0 and expected.stdout
    for path in (example_csv(tmp_path / "ex.csv"), example_parquet(tmp_path / "ex.parquet")):
        res = run("replay", SITE, path, "--json", "-")
        assert res.returncode == 0, res.stderr
        assert res.stdout == expected.stdout, path.suffix


def test_out_of_order_input_beyond_the_window_names_the_line(tmp_path: Path) -> None:
    # The ordering stage checks order once a whole reader chunk (1 M Parquet rows)
    # exceeds the sort budget, so the late fix must come after the first chunk.
    n = 1_100_000
    t0 = int(datetime(2026, 3, 22, 13, tzinfo=UTC).timestamp()) * 1_000_000
    t = t0 + np.arange(n, dtype=np.int64) * 10_000  # 100 fixes/s, 11 000 s
    late_row = 1_050_000
    t[late_row] = t0 + 600 * 1_000_000  # 10 minutes early: far beyond a 60 s window
    officers = pa.DictionaryArray.from_arrays(
        pa.array(np.arange(n) % 4, pa.int32()), pa.array(["A1", "A2", "U1", "S1"])
    )
    table = pa.table({
        "t": pa.array(t, pa.timestamp("us", "UTC")),
        "kind": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                               pa.array(["fix"])),
        "officer": officers,
        "x": np.full(n, 1.0),
        "y": np.full(n, 2.0),
    })  # fmt: skip
    path = tmp_path / "late.parquet"
    pq.write_table(table, path)

    res = run("replay", SITE, path, "--budget", "1000", "--disorder-window-s", "60")
    assert res.returncode == 2
    assert f"line {late_row + 1}:" in res.stderr, res.stderr  # rows count from 1
    assert "disorder window" in res.stderr

    # Within the budget the same input is sorted whole and replays.
    res = run("replay", SITE, path, "--json", "-")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", ["events.txt", "missing.jsonl"])
def test_unreadable_event_files_exit_2(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text(EVENTS.read_text())
    res = run("replay", SITE, path)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert name in res.stderr


def test_a_missing_pack_or_an_unreachable_tsa_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = run("evidence", "verify", tmp_path / "missing.zip")
    assert missing.returncode == 2 and "missing.zip" in missing.stderr
    assert "Traceback" not in missing.stderr
    # Port 9 (discard) on loopback refuses at once: no time-stamping authority there.
    head = run("audit", "head", "--tsa-url", "http://127.0.0.1:9/tsa",
               "--data-dir", tmp_path / "data")
    assert head.returncode == 1 and "gave no time-stamp" in head.stderr
    assert "Traceback" not in head.stderr
    assert (tmp_path / "data" / "keys" / "tree-heads.jsonl").exists()  # the head is kept


@pytest.mark.parametrize("args", [
    ["evidence", "export", "--since", "2026-03-22T00:00:00Z", "--until", "2026-03-23T00:00:00Z",
     "--out", "pack.zip"],
    ["records", "daily", "--date", "2026-03-22", "--out", "day.pdf"]])
def test_reading_a_servers_records_before_any_server_says_what_to_do(tmp_path: Path,
                                                                    args: list[str]) -> None:
    """A new user's `evidence export` before any server had run said only "has the server
    run?": it names where it looked and how to start a server (or point at its store)."""
    res = run(*args, "--data-dir", tmp_path / "data")
    said = " ".join(res.stderr.split())
    assert res.returncode == 2, res.stderr
    assert f"no site is stored in {tmp_path / 'data'}/ yet" in said
    assert "`coverwatch serve --site SITE.yaml`" in said and "--data-dir" in said
    assert "Traceback" not in res.stderr
    res = run(*args, "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert res.returncode == 2 and "give the --db that your server uses" in " ".join(
        res.stderr.split()), res.stderr
