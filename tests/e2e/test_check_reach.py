"""`coverwatch check` warns (and `--strict` refuses) a site that cannot use a phone's
position (no origin) or whose alerts reach nobody (no escalation); the examples pass."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.domain.lint import lint_reach
from coverwatch.formats.sitefile import load_site_text_document

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

BARE = """\
site: bare
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 10}
"""


def test_lint_reach_names_a_missing_origin_and_escalation() -> None:
    doc = load_site_text_document(BARE)
    origin, escalation = lint_reach(doc.site, has_escalation=False, devices=None)
    assert origin.startswith("origin: the site has no origin")
    assert escalation.startswith("escalation: the site has rules")
    # With a store that holds no device, a missing origin hurts nobody yet.
    assert lint_reach(doc.site, has_escalation=False, devices=0) == [escalation]
    assert "it has 2 device(s)" in lint_reach(doc.site, has_escalation=True, devices=2)[0]


def test_strict_check_refuses_a_site_without_origin_or_escalation(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(BARE)
    plain = runner.invoke(app, ["check", str(site)])
    assert plain.exit_code == 0
    assert "no origin" in plain.output and "no `escalation:`" in plain.output
    strict = runner.invoke(app, ["check", "--strict", str(site)])
    assert strict.exit_code == 2
    assert "--strict: 2 warning(s)" in strict.output


def test_both_examples_pass_strict_check() -> None:
    for name in ("yard", "quay"):
        result = runner.invoke(app, ["check", "--strict", str(ROOT / "examples" / name /
                                                               "site.yaml")])
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output


def test_version_help_and_the_device_token_note(tmp_path: Path) -> None:
    assert runner.invoke(app, ["--version"]).output.startswith("coverwatch ")
    top = runner.invoke(app, ["help"])
    assert top.exit_code == 0 and "Usage: coverwatch [OPTIONS] COMMAND" in top.output
    sub = runner.invoke(app, ["help", "devices", "add"])
    assert sub.exit_code == 0 and "Usage: coverwatch devices add" in sub.output
    assert runner.invoke(app, ["help", "nope"]).exit_code == 2
    added = runner.invoke(app, ["devices", "add", "phone-a1", "--officer", "A1",
                                "--data-dir", str(tmp_path)])
    assert added.exit_code == 0
    assert "device phone-a1 reports for officer A1" in added.output
    assert "put it in the phone app" in added.output
    assert added.output.strip().splitlines()[-1].startswith("cwd_")  # the token, last


def test_make_demo_notes_unchecked_escalation_targets_once(tmp_path: Path) -> None:
    """`make demo` checks both examples: the note that escalation targets were not looked
    up among people came once per file; now once, naming them, and only for targets that
    name people (a URL target is not a person to look up)."""
    makefile = (ROOT / "Makefile").read_text("utf-8")
    demo = makefile.split("\ndemo:")[1].split("\n\n")[0]
    (line,) = [w for w in demo.splitlines() if " check " in w]  # one check of both sites
    files = line.split(" check ")[1].split()
    assert files == ["examples/yard/site.yaml", "examples/quay/site.yaml"]
    both = runner.invoke(app, ["check", *(str(ROOT / f) for f in files)])
    assert both.exit_code == 0, both.output
    assert both.output.count("were not checked against people") == 1
    assert "role:admin, role:supervisor were not checked" in both.output
    url_only = tmp_path / "site.yaml"
    url_only.write_text(BARE + "escalation:\n  - {after_s: 0, notify: ['json://127.0.0.1:9/x']}\n")
    alone = runner.invoke(app, ["check", str(url_only)])
    assert alone.exit_code == 0, alone.output
    assert "not checked against people" not in alone.output
    checked = runner.invoke(app, ["check", "--data-dir", str(tmp_path), str(url_only)])
    assert "not checked against people" not in checked.output
    # A bad file among several: every file is checked, exit 2.
    bad = runner.invoke(app, ["check", str(tmp_path / "missing.yaml"), str(url_only)])
    assert bad.exit_code == 2 and "no such file" in bad.output and "ok " in bad.output


def test_the_demo_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    """`make demo` with something already on its port ended in a long traceback."""
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", "from coverwatch.cli import main; main()", "demo",
             "--port", str(port), "--data-dir", str(tmp_path / "demo")],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
