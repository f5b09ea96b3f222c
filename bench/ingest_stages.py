"""CPU per fix by stage of the batch ingest path, in one process (issue 25).

The bench's own 2 000-fix bodies (bench/ingest.py) through parse, validation, keying, the
store (a fresh SQLite store, WAL, synchronous=FULL, grown to 200 000 events as a 10 s bench
run does) and the engine hand-off, with ``time.process_time`` per stage. A tree with the
column path (``plain_fix_batch``) takes it; ``--rows``, or an older tree, the row path.
Run each tree in turn with its own PYTHONPATH (the ratio is what counts on a shared machine):

    PYTHONPATH=src .venv/bin/python bench/ingest_stages.py
    PYTHONPATH=../wt-base/src .venv/bin/python bench/ingest_stages.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats import validation
from coverwatch.formats.sitefile import load_site
from coverwatch.server.live import LiveCover
from coverwatch.storage import open_store

SITE = Path(__file__).resolve().parents[1] / "examples" / "yard" / "site.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", action="store_true", help="the row path even where columns exist")
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--batch", type=int, default=2000)
    args = ap.parse_args()
    columns = hasattr(validation, "plain_fix_batch") and not args.rows
    site = load_site(SITE)
    store = open_store(None, Path(tempfile.mkdtemp(prefix="cw-stages-")))
    t0_us = time.time_ns() // 1000
    live = LiveCover(site, lateness_us=2 * US_PER_S, start_horizon=t0_us - 10 * US_PER_S)
    bodies = [orjson.dumps([
        {"t": format_time(t0_us + s * 1000), "kind": "fix", "officer": f"L{s % 4}-{o}",
         "x": float((o * 37) % 1000), "y": float((o * 53) % 800), "accuracy_m": 5.0}
        for o in range(args.batch)]) for s in range(args.batches)]
    spent: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.process_time()
        spent[name] = spent.get(name, 0.0) + now - since
        return now

    now_us = t0_us + 10 * US_PER_S
    future = 10 * US_PER_S
    for body in bodies:
        t = time.process_time()
        records = orjson.loads(body)
        t = lap("parse", t)
        if columns:
            from coverwatch.storage.eventrows import key_fixes

            batch = validation.plain_fix_batch(records, now_us=now_us, max_future_us=future)
            assert batch is not None
            t = lap("validation", t)
            key_fixes(batch)
            t = lap("keying (request thread)", t)
            stored = store.append_fixes(batch, now_us)
            t = lap("store (insert, leaves, commit)", t)
            live.add_fix_columns(batch.t_us, batch.officer, batch.x, batch.y, batch.accuracy,
                                 [i for i, _ in stored])
            lap("engine hand-off", t)
            continue
        from coverwatch.server.admission import admit

        rows = validation.validate_records(records, site, now_us=now_us, max_future_us=future)
        t = lap("validation", t)
        admit(rows, [])
        t = lap("admission", t)
        for r in rows:
            r.update(source="http", device=None, received_us=now_us, _request=0, late=False)
        live.plan_late(rows)
        t = lap("tagging", t)
        result = store.append_events(rows)
        t = lap("store (keying, insert, leaves, commit)", t)
        live.add(result.rows)
        lap("engine hand-off", t)
    store.close()
    n = args.batches * args.batch
    print(f"{'columns' if columns else 'rows'}: {n} fixes")
    for name, s in spent.items():
        print(f"  {name}: {s / n * 1e6:.2f} µs/fix")
    total = sum(spent.values())
    print(f"  whole: {total / n * 1e6:.2f} µs/fix = {n / total:,.0f} fixes per CPU-second")


if __name__ == "__main__":
    main()
