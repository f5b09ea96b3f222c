"""End-to-end tests of `coverwatch orders` and the orders lint in `coverwatch
check`, run as the installed console script."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from clifork import script

from coverwatch.domain.orders import site_orders
from coverwatch.formats.sitefile import load_site

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "yard" / "site.yaml"
VAGUE = ROOT / "tests" / "unit" / "sites" / "orders-vague.yaml"
pytestmark = pytest.mark.usefixtures("forked_cli")  # each command forks (clifork.py)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([str(script()), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_orders_markdown_on_the_example_site() -> None:
    result = run("orders", SITE)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("# Post orders: Harbour Yard (fictional)\n")
    for post in site_orders(load_site(SITE)):
        assert f"## {post.post_name}\n" in out
        assert f"orders version `{post.version}`" in out
        for text in (*post.rules, *post.general):
            assert text in out
    assert "1. At least 2 armed officers must stay within 25 m of Main Gate whenever " \
           "open-hours is on." in out
    assert "Fixed armed post." in out
    assert out.index("### Cover rules") < out.index("### Written orders")
    assert "Approved by ____" in out


def test_orders_html_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "orders.html"
    result = run("orders", SITE, "--format", "html", "--out", target)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "@media print" in page and "<style>" in page
    assert "<link" not in page and "<script" not in page  # standalone
    assert "Approved by" in page and "Rank" in page and "Date" in page
    for post in site_orders(load_site(SITE)):
        assert post.version in page
    assert len(re.findall(r'<section class="post"', page)) == 3


def test_orders_on_an_invalid_site_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: x\nposts: []\n")
    result = run("orders", bad)
    assert result.returncode == 2
    assert f"{bad}:2:8: posts: a site needs at least one post" in result.stderr
    assert result.stdout == ""


def test_orders_rejects_an_unknown_format() -> None:
    result = run("orders", SITE, "--format", "pdf")
    assert result.returncode == 2


def test_check_warns_on_vague_orders_and_strict_fails() -> None:
    result = run("check", VAGUE)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning ")]
    assert len(warnings) == 7
    assert warnings[0].startswith(f"warning {VAGUE}:21:25: posts[0].orders: vague wording "
                                  "'short patrol'")
    assert "ok " in result.stdout
    strict = run("check", "--strict", VAGUE)
    assert strict.returncode == 2
    assert "--strict: 7 warning(s)" in strict.stderr
    assert "ok " not in strict.stdout


def test_check_strict_passes_on_the_clean_example() -> None:
    result = run("check", "--strict", SITE)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
