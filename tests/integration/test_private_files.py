"""Least privilege at rest: the data directory, database, keys, anchors and tree heads are
readable by the server's user only (issue 23, deliverable 5; they were 0644)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coverwatch.cli import app


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_keys_and_anchor_files_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, usual_umask: None,
) -> None:
    data = tmp_path / "data"
    monkeypatch.delenv("COVERWATCH_AUDIT_KEY_FILE", raising=False)
    monkeypatch.delenv("COVERWATCH_SITE", raising=False)
    monkeypatch.setenv("COVERWATCH_PASSWORD", "a long enough password")
    runner = CliRunner()
    args = ["--data-dir", str(data)]
    assert runner.invoke(app, ["users", "add", "ann", "--roles", "admin", *args]).exit_code == 0
    anchors = tmp_path / "witness" / "anchors.jsonl"
    r = runner.invoke(app, ["audit", "anchor", "--out", str(anchors), *args])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["audit", "keys", "--rotate-signing", *args])
    assert r.exit_code == 0, r.output
    for d in (data, data / "keys", anchors.parent):
        assert _mode(d) == 0o700, d
    files = [data / "coverwatch.db", anchors, anchors.with_name("tree-heads.jsonl"),
             *sorted((data / "keys").iterdir())]
    files += [p for p in data.iterdir() if p.name.startswith("coverwatch.db-")]
    assert len(files) >= 6
    for f in files:
        assert _mode(f) == 0o600, f
