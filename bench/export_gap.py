"""Export cost over a store that also holds one old event (issue 20, point 9).

Builds two FICTIONAL stores with the same 2-hour window of fixes (``--officers``
officers, one fix each every 10 s): one with nothing else, one with a single
fix ``--gap-days`` earlier. Exports the window as GPX from each (fresh checkpoints)
and prints both times, their ratio, and the checkpoints each export saved.
The target: the ratio stays near 1 whatever the gap.

    PYTHONPATH=src .venv/bin/python bench/export_gap.py [--gap-days 4000] [--officers 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.reports.exports import export_history
from coverwatch.storage import open_store

SITE = """\
site: bench-export
origin: {lat: 51.5, lon: -0.12}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 25}
"""
T0 = parse_time("2026-12-01T08:00:00Z")


def _run(data: Path, officers: int, gap_days: float | None) -> tuple[float, int]:
    store = open_store(None, data)
    try:
        rows = [{"kind": "duty", "t_us": T0, "officer": f"O{i}", "on": True, "source": "bench"}
                for i in range(officers)]
        rows += [{"kind": "fix", "t_us": T0 + s * US_PER_S, "officer": f"O{i}",
                  "x": float(i % 7), "y": float(s % 30), "accuracy": 5.0, "source": "bench"}
                 for s in range(0, 7200, 10) for i in range(officers)]
        if gap_days is not None:
            rows.append({"kind": "fix", "t_us": T0 - round(gap_days * 86_400 * US_PER_S),
                         "officer": "old", "x": 0.0, "y": 0.0, "accuracy": 5.0,
                         "source": "bench"})
        store.append_events(rows)
        start = time.perf_counter()
        export_history(store, SITE, T0, T0 + 7200 * US_PER_S, "gpx")
        return time.perf_counter() - start, len(store.checkpoint_times())
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gap-days", type=float, default=4000.0)
    parser.add_argument("--officers", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base, base_cp = _run(Path(tmp) / "a", args.officers, None)
        gap, gap_cp = _run(Path(tmp) / "b", args.officers, args.gap_days)
    print(f"2-hour GPX export, {args.officers} officers: {base:.2f} s alone "
          f"({base_cp} checkpoints); with one event {args.gap_days:g} days earlier "
          f"{gap:.2f} s ({gap_cp} checkpoints); ratio {gap / base:.2f}x (target: about 1)")


if __name__ == "__main__":
    main()
