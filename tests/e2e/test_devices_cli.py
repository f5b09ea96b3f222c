"""`coverwatch devices enrol` and `rotate`: the link and QR code that configure a phone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clifork import script

pytestmark = pytest.mark.usefixtures("forked_cli")  # each command forks (clifork.py)


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script()), *args, "--data-dir", str(data_dir)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})


def test_enrol_writes_a_qr_and_prints_the_links(tmp_path: Path) -> None:
    data = tmp_path / "data"
    qr = tmp_path / "phone.svg"
    done = _cli("devices", "enrol", "phone-a1", "--officer", "A1", "--qr", str(qr),
                "--public-url", "https://cover.example.org", data_dir=data)
    assert done.returncode == 0, done.stderr
    assert "https://cover.example.org/osmand?id=cwd_" in done.stdout
    assert "stop_detection=false" in done.stdout and "distance=0" in done.stdout
    assert "hdop={3}" in done.stdout
    assert qr.read_text().lstrip().startswith("<?xml")
    again = _cli("devices", "enrol", "phone-a1", "--officer", "A1", data_dir=data)
    assert again.returncode == 2
    # What to do instead (docs/server.md: a device added before gets its QR code so).
    assert "already exists: `coverwatch devices rotate phone-a1 --public-url URL --qr FILE`" \
        in " ".join(again.stderr.split()), again.stderr
    rotated = _cli("devices", "rotate", "phone-a1", "--public-url", "https://cover.example.org",
                   "--qr", str(tmp_path / "new.png"), data_dir=data)
    assert rotated.returncode == 0, rotated.stderr
    token = done.stdout.split("device identifier:")[1].split()[0]
    assert token.startswith("cwd_") and token not in rotated.stdout
    assert (tmp_path / "new.png").read_bytes()[:4] == b"\x89PNG"
    assert _cli("devices", "rotate", "nope", data_dir=data).returncode == 2
