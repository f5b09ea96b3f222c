"""`coverwatch users add/set/list` with contacts, and `coverwatch check --data-dir`
naming escalation targets that reach nobody."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clifork import script

from serverkit import write_site

pytestmark = pytest.mark.usefixtures("forked_cli")  # each command forks (clifork.py)


def run(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
           "COVERWATCH_PASSWORD": "a long enough password"}
    return subprocess.run(
        [str(script()), *map(str, args)], capture_output=True,
        text=True, env=env, timeout=120, input=stdin,
    )


ESCALATION = """escalation:
  - after_s: 0
    notify: [supervisor]
  - after_s: 300
    notify: [user:duty-inspector]
"""


def test_users_contacts_are_checked_replaced_added_and_listed_redacted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = run("users", "add", "sam", "--roles", "supervisor", "--notify", "nosuch://tok1234567",
              "--data-dir", data)
    assert bad.returncode == 2 and "Apprise does not accept" in bad.stderr
    assert "tok1234567" not in bad.stderr
    ok = run("users", "add", "sam", "--roles", "supervisor", "--notify",
             "mailto://sam:pw-s3cret@mail.example.org?to=sam@example.org", "--data-dir", data)
    assert ok.returncode == 0, ok.stderr
    added = run("users", "set", "sam", "--add-notify", "-", "--data-dir", data,
                stdin="ntfy://ntfy.example.org/sam-8271\n")
    assert added.returncode == 0, added.stderr
    listed = run("users", "list", "--data-dir", data)
    assert listed.returncode == 0, listed.stderr
    [line] = [x for x in listed.stdout.splitlines() if x.startswith("sam")]
    assert "mailto://***@mail.example.org" in line and "ntfy://" in line
    assert "pw-s3cret" not in listed.stdout + added.stdout
    replaced = run("users", "set", "sam", "--notify", "json://hooks.example.org/sam",
                   "--data-dir", data)
    assert replaced.returncode == 0, replaced.stderr
    listed = run("users", "list", "--data-dir", data)
    [line] = [x for x in listed.stdout.splitlines() if x.startswith("sam")]
    assert line.endswith("json://hooks.example.org/sam")
    ghost = run("users", "set", "ghost", "--notify", "json://h.example.org/x", "--data-dir", data)
    assert ghost.returncode == 2 and "ghost" in ghost.stderr


def test_check_names_escalation_targets_that_reach_nobody(tmp_path: Path) -> None:
    site = write_site(tmp_path, extra=ESCALATION)
    data = tmp_path / "data"
    plain = run("check", site)
    assert plain.returncode == 0 and "not checked against people" in plain.stderr
    assert run("users", "add", "sam", "--roles", "supervisor", "--data-dir", data).returncode == 0
    warned = run("check", site, "--data-dir", data)
    assert warned.returncode == 0, warned.stderr
    assert "role:supervisor reaches nobody: sam has no contact address" in warned.stderr
    assert "user:duty-inspector reaches nobody: there is no active user" in warned.stderr
    strict = run("check", site, "--data-dir", data, "--strict")
    assert strict.returncode == 2
    assert run("users", "set", "sam", "--notify", "json://h.example.org/sam",
               "--data-dir", data).returncode == 0
    assert run("users", "add", "duty-inspector", "--roles", "supervisor", "--notify",
               "json://h.example.org/di", "--data-dir", data).returncode == 0
    clean = run("check", site, "--data-dir", data, "--strict")
    assert clean.returncode == 0, clean.stderr
