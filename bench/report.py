"""Report benchmark: the cost of a one-hour and a one-day report with 1 and with N days of
history stored before it, with report checkpoints (reports/history.py) and without.

Officers (default 100) fix at a set rate (default 0.2 Hz) around the yard example's posts,
on duty all along. History is written straight into a fresh SQLite store; a first report
over everything saves the checkpoints (timed separately: the server does this as it goes).
The figure that matters is the ratio of the one-day report's cost with N days behind it
to its cost with 1 day behind it: with checkpoints it should stay near 1.

    .venv/bin/python bench/report.py                       # 100 officers, 0.2 Hz, 1 and 30 days
    .venv/bin/python bench/report.py --hz 0.02 --days 8    # a quicker, smaller run
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from coverwatch.domain.time import US_PER_S  # noqa: E402
from coverwatch.reports.history import recompute  # noqa: E402
from coverwatch.storage import Store, open_store  # noqa: E402
from coverwatch.storage.versions import SiteVersion, save_versions  # noqa: E402

YARD = ROOT / "examples" / "yard" / "site.yaml"
T0 = 1_800_000_000 * US_PER_S
DAY = 86_400 * US_PER_S
HOUR = 3_600 * US_PER_S
POSTS = [(0.0, 0.0), (140.0, 60.0), (60.0, -40.0)]


def fill(store: Store, days: int, officers: int, hz: float, seed: int = 1) -> int:
    rng = random.Random(seed)
    rows: list[dict[str, object]] = [
        {"kind": "duty", "t_us": T0, "officer": f"O{i}", "on": True,
         "capabilities": "armed" if i % 2 else "", "source": "bench"} for i in range(officers)]
    rows += [{"kind": "flag", "t_us": T0, "flag": "open-hours", "on": True, "source": "bench"},
             {"kind": "gate", "t_us": T0, "post": "main-gate", "open": True, "source": "bench"}]
    store.append_events(rows)
    step = round(US_PER_S / hz)
    home = [POSTS[i % len(POSTS)] for i in range(officers)]
    n = 0
    batch: list[dict[str, object]] = []
    for t in range(T0, T0 + days * DAY, step):
        for o in range(officers):
            x, y = home[o]
            batch.append({"kind": "fix", "t_us": t + o * 1000, "officer": f"O{o}",
                          "x": x + rng.gauss(0, 12), "y": y + rng.gauss(0, 12),
                          "accuracy": 5.0, "source": "bench"})
        if len(batch) >= 20_000:
            n += store.append_events(batch).inserted
            batch = []
    n += store.append_events(batch).inserted
    return n


def timed(fn: object, *args: object, **kw: object) -> tuple[float, object]:
    best = float("inf")
    out = None
    for _ in range(3):
        t = time.perf_counter()
        out = fn(*args, **kw)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--officers", type=int, default=100)
    ap.add_argument("--hz", type=float, default=0.2)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--full", action="store_true", help="also time full recomputes")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    ap.add_argument("--workdir", default=None, help="where the stores go (default: temp)")
    a = ap.parse_args()
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    results: dict[int, dict[str, float]] = {}
    stores: dict[int, Store] = {}
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        # Fill both stores first, then time their reports in alternation, so a change in the
        # machine's load during the (long) fill does not bias the ratio.
        for days in (1, a.days):
            store = open_store(None, Path(tmp) / f"d{days}", audit_key=False)
            save_versions(store, versions)
            t = time.perf_counter()
            n = fill(store, days + 1, a.officers, a.hz)
            fill_s = time.perf_counter() - t
            t = time.perf_counter()
            recompute(store, versions, until=T0 + (days + 1) * DAY - 1)  # saves the checkpoints
            results[days] = {"events": n, "fill_s": fill_s,
                             "checkpoints_s": time.perf_counter() - t,
                             "hour_s": float("inf"), "day_s": float("inf")}
            stores[days] = store
            print(f"{days:>3} day(s) of history: {n:,} events stored in {fill_s:.0f} s; "
                  f"checkpoints built in {results[days]['checkpoints_s']:.1f} s", flush=True)
        for _round in range(a.rounds):
            for days, store in stores.items():
                end = T0 + (days + 1) * DAY - 1
                r = results[days]
                hour_s, _ = timed(recompute, store, versions, since=end - HOUR, until=end)
                day_s, rep = timed(recompute, store, versions, since=end + 1 - DAY, until=end)
                r["hour_s"], r["day_s"] = min(r["hour_s"], hour_s), min(r["day_s"], day_s)
                if a.full and _round == 0:
                    t = time.perf_counter()
                    full = recompute(store, versions, since=end + 1 - DAY, until=end,
                                     checkpoints=False)
                    r["day_full_s"] = time.perf_counter() - t
                    assert full.lapses == rep.lapses and full.stats == rep.stats  # type: ignore
        for days, store in stores.items():
            r = results[days]
            print(f"{days:>3} day(s) of history: one-hour report {r['hour_s'] * 1000:.0f} ms, "
                  f"one-day report {r['day_s'] * 1000:.0f} ms"
                  + (f", one-day full recompute {r['day_full_s'] * 1000:.0f} ms"
                     if a.full else ""), flush=True)
            store.close()
    one, many = results[1], results[a.days]
    print(f"one-day report, {a.days} days vs 1 day of history: "
          f"{many['day_s'] / one['day_s']:.2f}x (target: within 1.20x); one-hour: "
          f"{many['hour_s'] / one['hour_s']:.2f}x")
    if a.full:
        print(f"full recompute, {a.days} vs 1 day: {many['day_full_s'] / one['day_full_s']:.2f}x")
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole run: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
