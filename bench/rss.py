"""Server memory under a large site's steady load: does RSS level off?

Starts a real `coverwatch serve` (bench/ingest.py's fictional depot), feeds 300 officers
at 1 Hz (HTTP batches), keeps one "dashboard tab" open (the SSE feed plus the control
room's polls of /api/v1/cover, /api/v1/plan and /api/v1/alerts/board every second), and
samples the server's RSS every 10 s. ``--arena-max N`` sets MALLOC_ARENA_MAX for the
server (glibc: how many malloc arenas the worker threads may spread over).

    .venv/bin/python bench/rss.py --seconds 150
    .venv/bin/python bench/rss.py --seconds 150 --arena-max 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # bench/ingest.py: the server and the load generator

__all__ = ["main"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def dashboard(url: str, seconds: float) -> int:
    """One control-room tab: the feed, and the periodic polls."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.post("/api/v1/login", json={"username": "bench", "password": ingest.PASSWORD})
        r.raise_for_status()
        n = 0

        async def feed() -> None:
            async with c.stream("GET", "/api/v1/feed") as resp:
                async for _ in resp.aiter_lines():
                    pass

        task = asyncio.create_task(feed())
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for path in ("/api/v1/cover", "/api/v1/plan", "/api/v1/alerts/board"):
                (await c.get(path)).raise_for_status()
                n += 1
            await asyncio.sleep(1.0)
        task.cancel()
        return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--officers", type=int, default=300)
    ap.add_argument("--arena-max", type=int, default=None)
    args = ap.parse_args(argv)
    if args.arena_max is not None:
        os.environ["MALLOC_ARENA_MAX"] = str(args.arena_max)
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp, \
            ingest.server(Path(tmp), tokens=2) as srv:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        load = ctx.Process(target=ingest.http_load_process,
                           args=(srv.url, srv.tokens, args.seconds, args.officers,
                                 float(args.officers), q))
        samples = [(0.0, rss_mb(srv.proc.pid))]
        load.start()
        t0 = time.monotonic()

        async def run() -> int:
            tab = asyncio.create_task(dashboard(srv.url, args.seconds))
            while not tab.done():
                await asyncio.sleep(10)
                samples.append((time.monotonic() - t0, rss_mb(srv.proc.pid)))
            return await tab

        polls = asyncio.run(run())
        res = q.get(timeout=120)
        load.join()
    arena = os.environ.get("MALLOC_ARENA_MAX", "default")
    print(f"RSS (MB) every 10 s, {args.officers} officers at 1 Hz "
          f"({res['accepted'] / res['elapsed']:,.0f} fixes/s stored), one dashboard tab "
          f"({polls} polls), MALLOC_ARENA_MAX={arena}:")
    print("  " + " ".join(f"{mb:.0f}" for _, mb in samples))
    first_half = samples[len(samples) // 2][1] - samples[0][1]
    second_half = samples[-1][1] - samples[len(samples) // 2][1]
    print(f"  growth: first half {first_half:+.0f} MB, second half {second_half:+.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
