"""Bounded parsing at the edges (issue 19, F3 and F5): YAML aliases that expand
too far, and CSV fields or rows that are too long, are refused with the file,
line (or row) and field, through the CLI (exit 2) and over HTTP (a 4xx), never
with a 500 or minutes of work.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clifork import script

from serverkit import YARD, Kit, base_settings, running_server

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("forked_cli")  # each command forks (clifork.py)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [str(script()), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300,
    )


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    with running_server(base_settings(YARD, tmp_path)) as k:
        yield k


def _errors(r: Any, status: int) -> list[dict[str, Any]]:
    assert r.status_code == status, r.text[:2000]
    assert r.headers["content-type"] == "application/problem+json"
    errors: list[dict[str, Any]] = r.json()["errors"]
    return errors


# -- YAML aliases (F3) ----------------------------------------------------------------

# 100 officers aliasing one route of 1 000 aliased points: 3 KB of text that expands
# to 300 000 nodes (the campaign's was 100 x 10 000: 42.9 s and +600 MB).
PLAN_BOMB = ("plan: bomb\nstart: 2030-01-01T08:00:00Z\nhours: 0.1\nofficers:\n"
             "  - id: o0\n    patrol: {route: &r [&p [40, 30], [80, 80], "
             + ", ".join(["*p"] * 1000) + "], speed_mps: 1}\n"
             + "".join(f"  - id: o{i}\n    patrol: {{route: *r, speed_mps: 1}}\n"
                       for i in range(1, 100)))
# Every post shares a list of 1 000 aliased lists of 10 aliased rules: 70 000 nodes.
SITE_BOMB = YARD.read_text().replace(
    "posts:\n",
    "x-rule: &one {id: r, need: 1, within_m: 5}\n"
    "x-ten: &ten [" + ", ".join(["*one"] * 10) + "]\n"
    "x-rules: &many [" + ", ".join(["*ten"] * 1000) + "]\n"
    + "posts:\n", 1).replace("    rules:\n", "    rules: *many\n    x-old:\n")


def test_check_refuses_a_site_whose_aliases_expand_too_far(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE_BOMB)
    res = run("check", site)
    assert res.returncode == 2, (res.returncode, res.stderr[-800:])
    assert f"{site}:" in res.stderr and "aliases expand the document too far" in res.stderr


def test_plan_check_cli_refuses_a_plan_whose_aliases_expand_too_far(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN_BOMB)
    res = run("plan", "check", ROOT / "examples" / "yard" / "site.yaml", plan)
    assert res.returncode == 2, (res.returncode, res.stderr[-800:])
    assert f"{plan}:38:21: officers[16].patrol.route:" in res.stderr
    assert "aliases expand the document too far" in res.stderr


def test_plan_check_and_site_apply_refuse_alias_bombs_over_http(kit: Kit) -> None:
    sup = kit.user("sup", "supervisor")
    r = kit.request(sup, "POST", "/api/v1/plan/check", json={"plan": PLAN_BOMB, "samples": 10})
    (e,) = _errors(r, 422)
    assert (e["line"], e["field"]) == (38, "officers[16].patrol.route")
    assert "aliases expand the document too far" in e["message"]
    admin = kit.user("root", "admin")
    r = kit.request(admin, "POST", "/api/v1/site/apply", json={"site": SITE_BOMB, "reason": "x"})
    (e,) = _errors(r, 422)
    # The line of x-rules in whatever the yard file is now; 704 x 71 nodes > 50 000.
    line = SITE_BOMB.splitlines().index(next(x for x in SITE_BOMB.splitlines()
                                             if x.startswith("x-rules:"))) + 1
    assert (e["line"], e["field"]) == (line, "x-rules[703]")
    assert "aliases expand the document too far" in e["message"]
    assert kit.client.get("/healthz").status_code == 200


# -- CSV uploads (F5) -------------------------------------------------------------------

LONG = "x" * 200_000  # over the csv module's own field limit (131 072): a 500 before
ROSTER = "officer,post,start,end\nA1,main-gate,2030-01-01T08:00:00Z,2030-01-01T09:00:00Z\n"
QUALS = "officer,qualification,valid_until\nA1,armed,2030-01-31\n"
CSV_CASES = [
    # (what, roster text, qualifications text, the problem)
    ("a field over the csv module's limit",
     ROSTER + f"A2,{LONG},2030-01-01T08:00:00Z,2030-01-01T09:00:00Z\n",
     QUALS + f"A2,{LONG},2030-01-31\n",
     "line 3: field {second}: longer than 1000 characters"),
    ("a quoted field over the limit",
     ROSTER + f'A2,"{LONG}",2030-01-01T08:00:00Z,2030-01-01T09:00:00Z\n',
     QUALS + f'A2,"{LONG}",2030-01-31\n',
     "line 3: field {second}: longer than 1000 characters"),
    ("a field over the row limit but under the module's",
     ROSTER + f"{'y' * 5000},main-gate,2030-01-01T08:00:00Z,2030-01-01T09:00:00Z\n",
     QUALS + f"{'y' * 5000},armed,2030-01-31\n",
     "line 3: field officer: longer than 1000 characters"),
    ("more fields than the header",
     ROSTER + "A2,main-gate,2030-01-01T08:00:00Z,2030-01-01T09:00:00Z" + ",z" * 5000 + "\n",
     QUALS + "A2,armed,2030-01-31" + ",z" * 5000 + "\n",
     "line 3: {n} fields, but the header names only {columns} columns"),
]


def _expected(template: str, kind: str) -> str:
    second, n, columns = ("post", 5004, 4) if kind == "roster" else ("qualification", 5003, 3)
    return template.format(second=second, n=n, columns=columns)


@pytest.mark.parametrize(("what", "roster", "quals", "problem"), CSV_CASES,
                         ids=[c[0] for c in CSV_CASES])
def test_csv_uploads_refuse_long_fields_and_rows_with_422(
        kit: Kit, what: str, roster: str, quals: str, problem: str) -> None:
    admin = kit.user("root", "admin")
    csv = {"Content-Type": "text/csv"}
    for kind, path, text in (("roster", "/api/v1/roster", roster),
                             ("qualifications", "/api/v1/qualifications", quals)):
        r = kit.request(admin, "POST", path, content=text.encode(), headers=csv)
        errors = _errors(r, 422)
        assert [e["message"] for e in errors] == [_expected(problem, kind)], (kind, what)
    # Nothing of the refused uploads was stored (all or nothing).
    assert kit.request(admin, "GET", "/api/v1/roster/shifts").json()["shifts"] == []
    got = kit.request(admin, "GET", "/api/v1/officers/A1/qualifications").json()
    assert got["qualifications"] == []


def test_csv_imports_on_the_command_line_refuse_long_fields(tmp_path: Path) -> None:
    site = ROOT / "examples" / "yard" / "site.yaml"
    for args, text, problem in (
        (["roster", "import", "--site", str(site)], CSV_CASES[0][1],
         "line 3: field post: longer than 1000 characters"),
        (["qualifications", "import"], CSV_CASES[0][2],
         "line 3: field qualification: longer than 1000 characters"),
        (["qualifications", "import"], "officer,qualification,valid_until\nA\xff\n", None),
    ):
        f = tmp_path / "in.csv"
        f.write_bytes(text.encode("utf-8") if problem else text.encode("latin-1"))
        res = run(*args[:2], f, *args[2:], "--data-dir", tmp_path / "data")
        assert res.returncode == 2, (args, res.returncode, res.stderr[-800:])
        assert "Traceback" not in res.stderr
        assert f"{f}: {problem or 'not UTF-8 (byte offset 35)'}" in " ".join(res.stderr.split())
