"""Fix -> first notification delivered: a real `coverwatch serve` under 1 k fixes/s of
background load, probe officers leaving grace-0 posts, and a local HTTP receiver standing
in for a supervisor's json:// contact (Apprise POSTs the message to it).

Latency per probe = the receiver's clock when the notification arrives minus
(lapse start + grace_s), as issue 14 defines it (the lapse start is the leaving fix's
time, grace is 0). It includes the allowed lateness (the watermark must pass the fix
before the engine may call it a lapse): the figure "after the watermark" subtracts it.

The site is FICTIONAL (bench/ingest.py's depot plus an escalation). Not a test.

    .venv/bin/python bench/notify.py                  # 40 probes, ~40 s
    .venv/bin/python bench/notify.py --samples 100 --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # bench/ingest.py: the server and the load generator

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.storage import open_store

__all__ = ["main"]


def receiver() -> tuple[ThreadingHTTPServer, list[tuple[float, dict[str, Any]]]]:
    got: list[tuple[float, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((time.time(), orjson.loads(body or b"{}")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, got


async def probe(srv: ingest.Server, samples: int) -> list[tuple[str, int]]:
    """Probe officers leave their grace-0 posts one after another; returns (post, leave time)."""
    hdr = {"Authorization": f"Bearer {srv.tokens[-1]}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:

        async def post(events: list[dict[str, Any]]) -> None:
            (await client.post("/api/v1/events", content=orjson.dumps(events),
                               headers=hdr)).raise_for_status()

        def fix(i: int, t: int, at_post: bool) -> dict[str, Any]:
            x = 5000 + 100 * i + (0.0 if at_post else 50.0)
            return {"t": format_time(t), "kind": "fix", "officer": f"Q{i}", "x": x, "y": 5000.0}

        t = ingest._now_us()
        officers = range(ingest.PROBES)
        await post([{"t": format_time(t), "kind": "duty", "officer": f"Q{i}", "on": True}
                    for i in officers] + [fix(i, t, True) for i in officers])
        await asyncio.sleep(ingest.LATENESS_S + 1)
        probes: list[tuple[str, int]] = []
        back: list[asyncio.Task[None]] = []

        async def come_back(i: int) -> None:
            await asyncio.sleep(0.5)
            await post([fix(i, ingest._now_us(), True)])

        for k in range(samples):
            i = k % ingest.PROBES
            t_leave = ingest._now_us()
            await post([fix(i, t_leave, False)])
            probes.append((f"probe-{i}", t_leave))
            back.append(asyncio.create_task(come_back(i)))
            await asyncio.sleep(1.0)  # each probe post is back before it leaves again
        await asyncio.gather(*back)
        await asyncio.sleep(ingest.LATENESS_S + 3)
    return probes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--rate", type=float, default=1000.0, help="background fixes/s")
    args = ap.parse_args(argv)
    http, got = receiver()
    base = f"127.0.0.1:{http.server_address[1]}"
    plain_site = ingest.site_yaml

    def site_with_escalation(site_id: str) -> str:
        return plain_site(site_id) + "escalation:\n  - after_s: 0\n    notify: [supervisor]\n"

    ingest.site_yaml = site_with_escalation
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp, \
            ingest.server(Path(tmp), tokens=3) as srv:
        store = open_store(srv.db_url, srv.data_dir)
        try:  # the supervisor's contact: the local receiver
            store.set_contacts("bench", [f"json://{base}/bench"])
        finally:
            store.close()
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        seconds = args.samples * 1.0 + 2 * ingest.LATENESS_S + 10
        load = ctx.Process(target=ingest.http_load_process,
                           args=(srv.url, srv.tokens[:-1], seconds, 100, args.rate, q))
        cpu0 = ingest._cpu_s(srv.proc.pid)
        load.start()
        time.sleep(1.5)
        probes = asyncio.run(probe(srv, args.samples))
        res = q.get(timeout=seconds + 60)
        load.join()
        cpu = (ingest._cpu_s(srv.proc.pid) - cpu0) / res["elapsed"]
    http.shutdown()
    lapse_probes = [(recv, m) for recv, m in got if "probe-" in str(m.get("title", ""))]
    by_post: dict[str, list[float]] = {}
    for recv, m in lapse_probes:
        post = str(m["title"]).split()[1]
        by_post.setdefault(post, []).append(recv)
    lat: list[float] = []
    missing = 0
    for post, t_leave in probes:
        start = t_leave / US_PER_S  # + grace_s = 0
        hits = [r for r in by_post.get(post, []) if r >= start]
        if not hits:
            missing += 1
            continue
        first = min(hits)
        by_post[post].remove(first)
        lat.append(first - start)
    after = [v - ingest.LATENESS_S for v in lat]
    print("  every probe (s): " + " ".join(f"{v:.2f}" for v in lat))
    pct = ingest._pct
    print(f"fix -> first notification delivered (json:// via Apprise), {len(lat)} probes, "
          f"{missing} missing; background {res['accepted'] / res['elapsed']:,.0f} fixes/s, "
          f"server CPU {100 * cpu:.0f} %, lateness {ingest.LATENESS_S:.0f} s")
    print(f"  from lapse start + grace: p50 {pct(lat, 0.5) * 1000:,.0f} ms  "
          f"p99 {pct(lat, 0.99) * 1000:,.0f} ms  "
          f"max {max(lat, default=float('nan')) * 1000:,.0f} ms")
    print(f"  after the watermark may pass: p50 {pct(after, 0.5) * 1000:,.0f} ms  "
          f"p99 {pct(after, 0.99) * 1000:,.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
