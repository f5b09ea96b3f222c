"""Interop benchmark: reading a GPX track against the same track as JSONL.

Writes one FICTIONAL officer's 1 Hz track of N points as GPX (formats/gpx.py
write_gpx) and as JSONL, replays both through the same path as `coverwatch
replay` and prints points/s of each and their ratio (GPX is parsed twice: a
defusedxml safety pass, then gpxpy), and checks the lapses agree.

    .venv/bin/python bench/interop.py [--points 100000]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from coverwatch.formats.gpx import GpxOptions, write_gpx
from coverwatch.formats.sitefile import load_site_text
from coverwatch.reports.replay import lapse_record, replay_file

SITE = """\
site: bench
origin: {lat: 51.5, lon: -0.12}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 25, capability: armed}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100_000)
    n = parser.parse_args().points
    site = load_site_text(SITE)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    points = [(start + timedelta(seconds=i), 51.5 + 40.0 * abs(math.sin(i / 60)) / 111_195.0,
               -0.12, 5.0) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        gpx, jsonl = Path(tmp) / "t.gpx", Path(tmp) / "t.jsonl"
        gpx.write_text(write_gpx([("A7", points)]))
        lines = [{"t": start.isoformat(), "kind": "duty", "officer": "A7", "on": True,
                  "capabilities": ["armed"]}]
        lines += [{"t": t.isoformat(), "kind": "fix", "officer": "A7", "lat": lat, "lon": lon,
                   "accuracy_m": acc} for t, lat, lon, acc in points]
        lines.append({"t": points[-1][0].isoformat(), "kind": "duty", "officer": "A7",
                      "on": False})
        jsonl.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
        t0 = time.perf_counter()
        a, _ = replay_file(site, jsonl)
        t1 = time.perf_counter()
        b, _ = replay_file(site, gpx, gpx=GpxOptions(capabilities=("armed",)))
        t2 = time.perf_counter()
    assert [lapse_record(x) for x in a.lapses] == [lapse_record(x) for x in b.lapses]
    print(f"{n} points, {len(a.lapses)} lapses (identical from both files)")
    print(f"JSONL replay: {n / (t1 - t0):,.0f} points/s")
    print(f"GPX replay:   {n / (t2 - t1):,.0f} points/s")
    print(f"GPX / JSONL time ratio: {(t2 - t1) / (t1 - t0):.1f}")


if __name__ == "__main__":
    main()
