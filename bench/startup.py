"""Start-up benchmark: the live server's start with 1 day and with N days of stored history.

Officers fix around the yard example's posts (written straight into a fresh SQLite store
each; nobody is booked on duty, so the rules lapse once at the start and stay so: the
start's cost is evaluating the stored events, not re-applying years of alerts), the saved
horizon at the end of it. Each store's live
state is then rebuilt as ``coverwatch serve`` does when it starts
(``server.handlers.startup.build``) in two ways, in alternation between the stores:

- **replay**: no live checkpoint, every stored on-time event is replayed (as before);
- **checkpoint**: from the live checkpoint the ticker saves (server/livecheckpoint.py),
  taken here at the end of the history, so only what follows it is added.

Both must give the same cover. The figure that matters is the ratio of the start with N
days behind it to the start with 1 day (target: within 1.2x). Each start's CPU time is
printed too: on a busy machine the wall clock of a start this short is mostly waiting
(the other jobs, the store's disk syncs).

    .venv/bin/python bench/startup.py                        # 20 officers, 0.01 Hz, 1 and 30 days
    .venv/bin/python bench/startup.py --days 8 --hz 0.005    # quicker
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from report import DAY, POSTS, T0, YARD  # noqa: E402

from coverwatch.formats.sitefile import load_site_document  # noqa: E402
from coverwatch.server.handlers.startup import build  # noqa: E402
from coverwatch.server.handlers.tick import HORIZON_KEY  # noqa: E402
from coverwatch.server.livecheckpoint import CHECKPOINT_KEY, save  # noqa: E402
from coverwatch.settings import Settings  # noqa: E402
from coverwatch.storage import Store, open_store  # noqa: E402
from coverwatch.storage.versions import SiteVersion, load_versions, save_versions  # noqa: E402

__all__ = ["main"]


def fill(store: Store, days: int, officers: int, hz: float, seed: int = 1) -> int:
    """Fixes only, ``officers`` each every ``1 / hz`` s around the posts, for ``days``."""
    rng = random.Random(seed)
    step = round(1_000_000 / hz)
    n = 0
    batch: list[dict[str, object]] = []
    for t in range(T0, T0 + days * DAY, step):
        for o in range(officers):
            x, y = POSTS[o % len(POSTS)]
            batch.append({"kind": "fix", "t_us": t + o * 1000, "officer": f"O{o}",
                          "x": x + rng.gauss(0, 12), "y": y + rng.gauss(0, 12),
                          "accuracy": 5.0, "source": "bench"})
        if len(batch) >= 20_000:
            n += store.append_events(batch).inserted
            batch = []
    n += store.append_events(batch).inserted
    return n


def _start(settings: Settings, store: Store, end: int) -> tuple[float, float, object]:
    """Wall and CPU seconds of one start (CPU: the other jobs on a shared machine and
    the disk's syncs inflate the wall clock, not the process's own time)."""
    doc = load_site_document(YARD)
    t, c = time.perf_counter(), time.process_time()
    unit = build(settings, store, doc, clock=lambda: end + 2_000_000)
    return time.perf_counter() - t, time.process_time() - c, unit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--officers", type=int, default=20)
    ap.add_argument("--hz", type=float, default=0.01)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(f"live start-up; {load}", flush=True)
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    best: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        stores: dict[int, tuple[Settings, Store, int, str]] = {}
        for days in (1, a.days):
            data = Path(tmp) / f"d{days}"
            store = open_store(None, data)
            save_versions(store, versions)
            t = time.perf_counter()
            n = fill(store, days, a.officers, a.hz)
            end = T0 + days * DAY
            store.set_state(HORIZON_KEY, str(end))
            settings = Settings(site_path=YARD, data_dir=data)
            _, _, unit = _start(settings, store, end)
            save(store, unit.live, load_versions(store))  # type: ignore[attr-defined]
            checkpoint = store.get_state(CHECKPOINT_KEY) or ""
            stores[days] = (settings, store, end, checkpoint)
            print(f"{days:>3} day(s): {n:,} events stored in {time.perf_counter() - t:.0f} s; "
                  f"checkpoint {len(checkpoint) / 1024:.0f} KiB", flush=True)
        for _ in range(a.rounds):
            for days, (settings, store, end, checkpoint) in stores.items():
                seen = {}
                for way in ("replay", "checkpoint"):
                    store.set_state(CHECKPOINT_KEY, checkpoint if way == "checkpoint" else "")
                    took, cpu, unit = _start(settings, store, end)
                    for key, value in (((days, way), took), ((days, way + " cpu"), cpu)):
                        best[key] = min(best.get(key, float("inf")), value)
                    live = unit.live  # type: ignore[attr-defined]
                    seen[way] = (live.horizon, live.cover_states(), live.officers())
                assert seen["replay"] == seen["checkpoint"], "the two starts differ"
        for (_, store, _, checkpoint) in stores.values():
            store.set_state(CHECKPOINT_KEY, checkpoint)
            store.close()
    for way in ("replay", "checkpoint", "replay cpu", "checkpoint cpu"):
        one, many = best[(1, way)], best[(a.days, way)]
        print(f"{way:<14} start, best of {a.rounds}: 1 day {one * 1000:7.0f} ms, "
              f"{a.days} days {many * 1000:7.0f} ms: {many / one:.2f}x "
              f"(target: within 1.20x)")
    print("load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
