"""The interop commands as a user runs them: replay a GPX track, import event
files into the store (twice), draw a site as GeoJSON and back, the degrees
warning of `check`, and `export`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import orjson
import pytest
from clifork import script

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "unit" / "samples"
pytestmark = pytest.mark.usefixtures("forked_cli")  # each command forks (clifork.py)
SITE = """\
site: quay
origin: {lat: 51.5, lon: -0.12}
flags: {open-hours: true}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 25, capability: armed, grace_s: 10, when: open-hours}
"""


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([str(script()), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def _site(tmp_path: Path, text: str = SITE) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_replay_reads_a_gpx_track(tmp_path: Path) -> None:
    site = _site(tmp_path)
    gpx = SAMPLES / "patrol-several-segments.gpx"
    r = run("replay", site, gpx, "--capability", "armed", "--json", "-")
    assert r.returncode == 0, r.stderr
    lapses = [json.loads(line) for line in r.stdout.splitlines()]
    # On duty 08:00:00; near the gate; 170 m away from 08:02:00 (after a stale gap).
    assert lapses and lapses[0]["post"] == "gate"
    without = run("replay", site, gpx, "--json", "-")  # no capability: never armed cover
    first = json.loads(without.stdout.splitlines()[0])
    assert first["start"] == "2025-01-01T08:00:00Z"
    r = run("replay", site, SAMPLES / "route-without-times.gpx")
    assert r.returncode == 2
    assert "trk[0].trkseg[0].trkpt[0]" in r.stderr and "no <time>" in r.stderr
    r = run("replay", site, SAMPLES / "two-officers.gpx", "--officer", "B2")
    assert r.returncode == 2 and "2 tracks" in r.stderr
    events = tmp_path / "e.jsonl"
    events.write_text('{"t": 1, "kind": "fix", "officer": "A1", "x": 0, "y": 0}\n')
    r = run("replay", site, events, "--capability", "armed")
    assert r.returncode == 2 and "apply to GPX files only" in r.stderr


def test_events_import_is_validated_and_idempotent(tmp_path: Path) -> None:
    site = _site(tmp_path)
    data = tmp_path / "data"
    events = tmp_path / "events.jsonl"
    lines = [{"t": "2025-01-01T08:00:00Z", "kind": "duty", "officer": "A1", "on": True,
              "capabilities": ["armed"]},
             {"t": "2025-01-01T08:00:01Z", "kind": "fix", "officer": "A1", "x": 1, "y": 2},
             {"t": "2025-01-01T08:00:02Z", "kind": "gate", "post": "gate", "open": True}]
    events.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    r = run("events", "import", events, "--site", site, "--data-dir", data)
    assert r.returncode == 2, r.stderr
    assert "line 3, post" in r.stderr and "has no gate" in r.stderr  # nothing stored
    events.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines[:2]))
    r = run("events", "import", events, "--site", site, "--data-dir", data)
    assert r.returncode == 0, r.stderr
    assert "2 events read, 2 stored, 0 already stored" in r.stdout
    r = run("events", "import", events, "--site", site, "--data-dir", data)
    assert "2 events read, 0 stored, 2 already stored" in r.stdout
    gpx = tmp_path / "patrol.gpx"  # the sample (dated in the past: no future times)
    gpx.write_text((SAMPLES / "patrol-several-segments.gpx").read_text().replace("2030-", "2025-"))
    r = run("events", "import", gpx, "--site", site, "--data-dir", data, "--capability", "armed")
    assert r.returncode == 0, r.stderr
    assert "7 events read, 7 stored" in r.stdout  # 5 fixes and the duty span
    out = tmp_path / "export.csv"
    r = run("export", "--site", site, "--data-dir", data, "--since", "2025-01-01T07:00:00Z",
            "--until", "2025-01-01T09:00:00Z", "--format", "csv", "--out", out)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    fixes = [row for row in rows if row["type"] == "fix"]
    assert {row["officer"] for row in fixes} == {"A1", "A7"} and len(fixes) == 6
    assert any(row["type"] == "lapse" for row in rows)
    r = run("export", "--site", site, "--data-dir", data, "--since", "2025-01-01T07:00:00Z",
            "--until", "2025-01-01T09:00:00Z", "--format", "gpx")
    assert r.returncode == 0 and "<name>A7</name>" in r.stdout
    r = run("export", "--site", site, "--data-dir", data, "--since", "2025-01-01T09:00:00Z",
            "--until", "2025-01-01T07:00:00Z")
    assert r.returncode == 2 and "--until" in r.stderr


def test_geojson_site_round_trip_and_degrees_warning(tmp_path: Path) -> None:
    yard = ROOT / "examples" / "yard" / "site.yaml"
    gj = tmp_path / "yard.geojson"
    # The example has an origin now; a copy without one cannot be placed on the map.
    no_origin = tmp_path / "no-origin.yaml"
    no_origin.write_text(yard.read_text().replace("origin: {lat: 12.5, lon: -32.5}\n", ""))
    (tmp_path / "yard-plan.svg").write_bytes((yard.parent / "yard-plan.svg").read_bytes())
    r = run("site", "export-geojson", no_origin, "--out", gj)
    assert r.returncode == 2 and "no origin" in r.stderr
    assert run("site", "export-geojson", no_origin, "--origin", "12.5,-32.5", "--out",
               gj).returncode == 0
    back = tmp_path / "yard.yaml"
    r = run("site", "import-geojson", gj, "--out", back)
    assert r.returncode == 0, r.stderr
    assert run("check", back).returncode == 0
    events = ROOT / "examples" / "yard" / "roving-patrol.jsonl"
    a = run("replay", yard, events, "--json", "-")
    b = run("replay", back, events, "--json", "-")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and a.stdout.strip()
    r = run("site", "import-geojson", SAMPLES / "hole-and-parts.geojson")
    assert r.returncode == 2
    assert "features[0].geometry.coordinates" in r.stderr
    assert "features[2].properties.colour" in r.stderr
    degrees = _site(tmp_path, SITE.replace("at: [0, 0]", "area: [[-0.1201, 51.5], "
                                           "[-0.12, 51.5], [-0.12, 51.5001]]"))
    r = run("check", degrees)
    assert r.returncode == 0
    assert "posts[0].area (post gate)" in r.stderr and "look like degrees" in r.stderr
    r = run("check", "--strict", degrees)
    assert r.returncode == 2
