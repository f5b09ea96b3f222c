"""Bounded parsing at the edges (issue 19, F3 and F5): YAML aliases that expand
too far, and CSV fields or rows that are too long, are refused with the file,
line (or row) and field, through the CLI (exit 2) and over HTTP (a 4xx), never
with a 500 or minutes of work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serverkit import YARD, Kit, base_settings, running_server

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", "from coverwatch.cli import main; main()", *map(str, args)],
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
    assert (e["line"], e["field"]) == (16, "x-rules[703]")  # 704 x 71 nodes > 50 000
    assert "aliases expand the document too far" in e["message"]
    assert kit.client.get("/healthz").status_code == 200
