"""Start-up benchmark: the live server's start with 1 day and with N days of stored history.

Officers fix around the yard example's posts (written straight into a fresh SQLite store
each; nobody is booked on duty, so the rules lapse once at the start and stay so: the
start's cost is evaluating the stored events, not re-applying years of alerts), the saved
horizon at the end of it; beside them ``--alerts-per-hour`` closed lapse alerts an hour
and an incident a day, the history of alerts a start must not read. Each store's live
state is then rebuilt as ``coverwatch serve`` does when it starts
(``server.handlers.startup.build``) in two ways, in alternation between the stores:

- **replay**: no live checkpoint, every stored on-time event is replayed (as before);
- **checkpoint**: from the live checkpoint the ticker saves (server/livecheckpoint.py),
  taken here at the end of the history, so only what follows it is added;
- **serve**: the whole start of `coverwatch serve`'s app from that checkpoint, until it
  is ready (the store opened, the site built, its tasks started: bootstrap.create_app).

Both must give the same cover. The figure that matters is the ratio of the start with N
days behind it to the start with 1 day (target: within 1.2x). Each start's CPU time is
printed too: on a busy machine the wall clock of a start this short is mostly waiting
(the other jobs, the store's disk syncs).

Replaying every event of a long history takes minutes, so a store of more than
``--replay-max-days`` (default 10) is not started the replay way, and its checkpoint is
built from the events of its last ``KEEP`` days only (the checkpoint keeps no more than
the last 168 h of lapses and timeline points anyway): the same state but for the start
of the lapses open since before then and the totals of the older days, none of which
changes its size; it still names the newest stored event, so a start from it adds none
and reads the whole history's tables as any start does. ``--checkpoint-days-max`` sets
that cut.

    .venv/bin/python bench/startup.py                        # 20 officers, 0.01 Hz, 1 and 30 days
    .venv/bin/python bench/startup.py --days 8 --hz 0.005    # quicker
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
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
from coverwatch.server.live import LiveCover  # noqa: E402
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


def fill_alerts(store: Store, days: int, per_hour: int) -> int:
    """``per_hour`` lapse alerts an hour at the posts, acknowledged, resolved and closed,
    and each day's first three grouped as an incident (written straight into the store,
    as the server records them): the history a start must not read."""
    from coverwatch.domain.alerts import Alert, alert_id_for

    n = 0
    hour = DAY // 24
    for h in range(days * 24):
        for k in range(per_hour):
            at = T0 + h * hour + k * (hour // per_hour)
            post = f"P{k % len(POSTS)}"
            a = Alert(id=alert_id_for("lapse", post, "bench", at), kind="lapse", post=post,
                      rule="bench", lapse_start=at, alert_at=at + 60_000_000, count=0, need=1)
            a.acknowledge("sam", "on it", at + 120_000_000)
            a.resolve(at + 300_000_000)
            a.close("sam", "done", at + 400_000_000)
            store.record_alert_event(a.to_record(), actor="bench", action="alert.closed")
            n += 1
        if h % 24 == 0:
            first = T0 + h * hour
            members = [alert_id_for("lapse", f"P{k}", "bench", first + k * (hour // per_hour))
                       for k in range(min(3, per_hour))]
            store.save_incidents([{"id": f"incident-{members[0]}", "started": first,
                                   "cause": "flood", "members": members,
                                   "posts": [f"P{k}" for k in range(len(members))],
                                   "told": [0], "latest": first + 60_000_000}])
    return n


def recent_checkpoint(store: Store, settings: Settings, end: int, days: int) -> None:
    """Save the checkpoint of a live state fed only the last ``days`` days of the stored
    events (as build's replay start does, from there), naming the newest stored event."""
    doc = load_site_document(YARD)
    cut = end - days * DAY
    live = LiveCover(doc.site, lateness_us=round(settings.lateness_s * 1_000_000),
                     start_horizon=end, timeline=True)
    after = 0
    while rows := store.events_since(after, limit=50_000):
        live.add([r for r in rows if int(r["t_us"]) >= cut])
        live.max_id = int(rows[-1]["id"])
        after = int(rows[-1]["id"])
    live.advance_to(end)
    save(store, live, load_versions(store))


def _start(settings: Settings, store: Store, end: int) -> tuple[float, float, object]:
    """Wall and CPU seconds of one start (CPU: the other jobs on a shared machine and
    the disk's syncs inflate the wall clock, not the process's own time)."""
    doc = load_site_document(YARD)
    t, c = time.perf_counter(), time.process_time()
    unit = build(settings, store, doc, clock=lambda: end + 2_000_000)
    return time.perf_counter() - t, time.process_time() - c, unit


def _serve(settings: Settings, _store: Store, end: int) -> tuple[float, float, object]:
    """Wall and CPU seconds of a whole server start as `coverwatch serve` does it (the
    app's start-up: the store opened, each site built, its tasks started), to ready."""
    import asyncio

    from coverwatch.bootstrap import create_app

    app = create_app(settings, clock=lambda: end + 2_000_000)

    async def go() -> tuple[float, float, object]:
        t, c = time.perf_counter(), time.process_time()
        async with app.router.lifespan_context(app):
            took = time.perf_counter() - t, time.process_time() - c
            return (*took, next(iter(app.state.sites.values())))

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--officers", type=int, default=20)
    ap.add_argument("--hz", type=float, default=0.01)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--alerts-per-hour", type=int, default=3,
                    help="closed lapse alerts stored per hour of history (and an incident a day)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--repeat", type=int, default=5,
                    help="starts from the checkpoint per store and round (each timed)")
    ap.add_argument("--replay-max-days", type=int, default=10,
                    help="longer stores are started from their checkpoint only")
    ap.add_argument("--checkpoint-days-max", type=int, default=8,
                    help="a longer store's checkpoint is built from its last this many days")
    a = ap.parse_args()
    load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(f"live start-up; {load}", flush=True)
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    runs: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        stores: dict[int, tuple[Settings, Store, int, str]] = {}
        for days in (1, a.days):
            data = Path(tmp) / f"d{days}"
            store = open_store(None, data)
            save_versions(store, versions)
            t = time.perf_counter()
            n = fill(store, days, a.officers, a.hz)
            n_alerts = fill_alerts(store, days, a.alerts_per_hour)
            end = T0 + days * DAY
            store.set_state(HORIZON_KEY, str(end))
            settings = Settings(site_path=YARD, data_dir=data)
            filled = time.perf_counter() - t
            if days <= a.checkpoint_days_max:
                _, _, unit = _start(settings, store, end)
                save(store, unit.live, load_versions(store))  # type: ignore[attr-defined]
            else:
                recent_checkpoint(store, settings, end, a.checkpoint_days_max)
            checkpoint = store.get_state(CHECKPOINT_KEY) or ""
            stores[days] = (settings, store, end, checkpoint)
            print(f"{days:>3} day(s): {n:,} events and {n_alerts:,} closed alerts stored in "
                  f"{filled:.0f} s, checkpoint "
                  f"{len(checkpoint) / 1024:.0f} KiB after {time.perf_counter() - t:.0f} s",
                  flush=True)
        for _ in range(a.rounds):
            for days, (settings, store, end, checkpoint) in stores.items():
                seen = {}
                for way in ("replay", "checkpoint", "serve"):
                    if way == "replay" and days > a.replay_max_days:
                        continue
                    store.set_state(CHECKPOINT_KEY, checkpoint if way != "replay" else "")
                    for _ in range(1 if way == "replay" else a.repeat):
                        took, cpu, unit = (_serve if way == "serve" else _start)(settings, store,
                                                                                  end)
                        for key, value in (((days, way), took), ((days, way + " cpu"), cpu)):
                            runs.setdefault(key, []).append(value)
                    live = unit.live  # type: ignore[attr-defined]
                    seen[way] = (live.horizon, live.cover_states(), live.officers())
                if "replay" in seen:
                    assert seen["replay"] == seen["checkpoint"], "the two starts differ"
        for (_, store, _, checkpoint) in stores.values():
            store.set_state(CHECKPOINT_KEY, checkpoint)
            store.close()
    for way in ("replay", "checkpoint", "serve", "replay cpu", "checkpoint cpu", "serve cpu"):
        if (a.days, way) not in runs:
            continue
        one, many = runs[(1, way)], runs[(a.days, way)]
        med = statistics.median(many) / statistics.median(one)
        print(f"{way:<14} start, {len(one)} runs: 1 day min {min(one) * 1000:6.1f} / median "
              f"{statistics.median(one) * 1000:6.1f} ms, {a.days} days "
              f"{min(many) * 1000:6.1f} / {statistics.median(many) * 1000:6.1f} ms: "
              f"{min(many) / min(one):.2f}x / {med:.2f}x "
              f"(target: within 1.20x)")
    print("load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
