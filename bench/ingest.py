"""Live ingest benchmark: a real `coverwatch serve` process fed by a separate load process.

Measures, with durability as configured (SQLite WAL with synchronous=FULL, or
PostgreSQL; every batch committed before it is acknowledged):

  http-sqlite  batch HTTP ingest (POST /api/v1/events) into SQLite, fixes/s;
  http-pg      the same into PostgreSQL (a fresh schema, `coverwatch db upgrade` first);
  mqtt         MQTT QoS 1 into SQLite, stored/s, batches of fixes per message and one
               fix per message;
  latency      fix-to-alert latency on the live feed (SSE) at 5 k fixes/s background load:
               a probe officer leaves a grace-0 post; the time from the POST of that fix
               (and from the moment the watermark may first pass it) to the alert message.

The site is FICTIONAL (a generated depot). Nothing here is timed by a test.

    .venv/bin/python bench/ingest.py                        # everything, ~3 minutes
    .venv/bin/python bench/ingest.py --only http-sqlite,latency --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.storage import open_store

__all__ = ["main"]

SCRIPT = Path(sys.executable).parent / "coverwatch"
POSTGRES_URL = os.environ.get(
    "COVERWATCH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MQTT_URL = os.environ.get("COVERWATCH_BENCH_MQTT_URL", "mqtt://127.0.0.1:1883")
LATENESS_S = 2.0
PROBES = 10
PASSWORD = "bench-password-123"
MQTT_WINDOW = 800  # messages published but not yet stored
TRACCAR_MSGS_PER_S = 8000  # claimed by Traccar's maintainer, not benchmarked (CONTEXT.md)


def site_yaml(site_id: str) -> str:
    """A fictional depot: a grid of background posts and grace-0 probe posts far away."""
    lines = [
        f"site: {site_id}",
        "name: Bench Depot (fictional)",
        "timezone: UTC",
        "stale_after_s: 30",
        "posts:",
    ]
    for i in range(20):
        x, y = (i % 5) * 200.0, (i // 5) * 200.0
        lines += [
            f"  - id: post-{i}",
            f"    at: [{x}, {y}]",
            "    rules:",
            "      - {id: cover, need: 1, within_m: 30, grace_s: 60}",
        ]
    for i in range(PROBES):
        lines += [
            f"  - id: probe-{i}",
            f"    at: [{5000 + 100 * i}, 5000]",
            "    rules:",
            "      - {id: watch, need: 1, within_m: 10, grace_s: 0}",
        ]
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    db_url: str | None
    data_dir: Path
    tokens: list[str]
    site_id: str

    def store_count(self) -> int:
        store = open_store(self.db_url, self.data_dir)
        try:
            return int(store.count_events())
        finally:
            store.close()


@contextlib.contextmanager
def server(
    work: Path, *, db_url: str | None = None, mqtt: bool = False, tokens: int = 4
) -> Iterator[Server]:
    """Start `coverwatch serve` on a fresh store; yield once it is ready."""
    site_id = f"bench-{uuid.uuid4().hex[:8]}"
    site = work / "site.yaml"
    site.write_text(site_yaml(site_id))
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if db_url is not None:
        subprocess.run(
            [str(SCRIPT), "db", "upgrade", "--db", db_url], check=True, capture_output=True
        )
    store = open_store(db_url, data_dir)
    try:
        plain = [store.create_api_token(f"load-{i}", ["ingest"])[1] for i in range(tokens)]
        store.create_user("bench", PASSWORD, ["supervisor"])
    finally:
        store.close()
    port = _free_port()
    cmd = [
        str(SCRIPT),
        "serve",
        "--site",
        str(site),
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--lateness-s",
        str(LATENESS_S),
    ]
    if db_url is not None:
        cmd += ["--db", db_url]
    if mqtt:
        cmd += ["--mqtt", MQTT_URL]
    log = (work / "server.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(work / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready within 30 s")
            time.sleep(0.05)
        yield Server(proc, url, db_url, data_dir, plain, site_id)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- HTTP load generator (runs in its own process) ------------------------------------


def _now_us() -> int:
    return time.time_ns() // 1000


def _fix_batch(prefix: str, n: int, officers: int, seq: int) -> bytes:
    t = format_time(_now_us())
    start = (seq * n) % officers
    events = []
    for k in range(n):
        o = (start + k) % officers
        events.append(
            {
                "t": t,
                "kind": "fix",
                "officer": f"{prefix}{o}",
                "x": float((o * 37) % 1000),
                "y": float((o * 53) % 800),
                "accuracy_m": 5.0,
            }
        )
    return orjson.dumps(events)


def _duty_batch(prefix: str, officers: int) -> bytes:
    t = format_time(_now_us())
    return orjson.dumps(
        [{"t": t, "kind": "duty", "officer": f"{prefix}{o}", "on": True} for o in range(officers)]
    )


async def _http_load(
    url: str, tokens: list[str], seconds: float, batch: int, rate: float | None, out: Any
) -> None:
    sent = accepted = late = failed = 0
    per_conn_officers = max(batch, 1000)
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_connections=len(tokens))
    ) as client:
        for c, token in enumerate(tokens):
            r = await client.post(
                "/api/v1/events",
                content=_duty_batch(f"L{c}-", per_conn_officers),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            r.raise_for_status()
        start = time.monotonic()
        end = start + seconds
        # Paced: each connection sends its share of `rate`.
        interval = None if rate is None else batch * len(tokens) / rate

        async def conn(c: int, token: str) -> None:
            nonlocal sent, accepted, late, failed
            seq = 0
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            next_at = start + (0 if interval is None else interval * c / len(tokens))
            while True:
                if interval is not None:
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    next_at += interval
                if time.monotonic() >= end:
                    return
                body = _fix_batch(f"L{c}-", batch, per_conn_officers, seq)
                seq += 1
                r = await client.post("/api/v1/events", content=body, headers=headers)
                sent += batch
                if r.status_code == 200:
                    res = r.json()
                    accepted += res["accepted"]
                    late += res["late"]
                else:
                    failed += batch

        await asyncio.gather(*(conn(c, t) for c, t in enumerate(tokens)))
        elapsed = time.monotonic() - start
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.put(
        {
            "sent": sent,
            "accepted": accepted,
            "late": late,
            "failed": failed,
            "elapsed": elapsed,
            "cpu": ru.ru_utime + ru.ru_stime,
        }
    )


def http_load_process(
    url: str, tokens: list[str], seconds: float, batch: int, rate: float | None, out: Any
) -> None:
    asyncio.run(_http_load(url, tokens, seconds, batch, rate, out))


def run_http(srv: Server, seconds: float, batch: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    cpu0 = _cpu_s(srv.proc.pid)
    p = ctx.Process(target=http_load_process, args=(srv.url, srv.tokens, seconds, batch, None, q))
    p.start()
    res = q.get(timeout=seconds + 120)
    p.join()
    res["server_cpu"] = _cpu_s(srv.proc.pid) - cpu0
    res["stored"] = srv.store_count()
    res["rate"] = res["accepted"] / res["elapsed"]
    return dict(res)


# -- MQTT ------------------------------------------------------------------------------


def mqtt_publish_process(
    site_id: str, db_file: str, messages: int, per_message: int, out: Any
) -> None:
    """Publish at QoS 1 as fast as the server stores, keeping < WINDOW messages unstored.

    The window matters: Mosquitto's default max_queued_messages (1000) drops QoS 1
    messages queued for a subscriber beyond it, so an open-loop burst measures the
    broker's drops, not coverwatch.
    """
    import sqlite3
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(MQTT_URL)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{site_id}")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    topic = f"coverwatch/{site_id}/events"
    officers = 2000
    start = time.monotonic()
    infos = []
    db = sqlite3.connect(db_file)
    base = db.execute("SELECT count(*) FROM events").fetchone()[0]
    stored_msgs = 0
    for m in range(messages):
        while m - stored_msgs >= MQTT_WINDOW:
            time.sleep(0.01)
            stored_msgs = (
                db.execute("SELECT count(*) FROM events").fetchone()[0] - base
            ) // per_message
        t = format_time(_now_us())
        events = [
            {
                "t": t,
                "kind": "fix",
                "officer": f"M{(m * per_message + k) % officers}",
                "x": float(k % 900),
                "y": float(m % 700),
            }
            for k in range(per_message)
        ]
        payload = orjson.dumps(events[0] if per_message == 1 else events)
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(30)
    elapsed = time.monotonic() - start
    client.loop_stop()
    client.disconnect()
    out.put({"elapsed": elapsed})


def run_mqtt(srv: Server, fixes: int, per_message: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    # Wait for the server's subscription (its consumer reports mqtt connected on /metrics);
    # a short pause is enough: the persistent session would keep messages anyway.
    time.sleep(1.5)
    base = srv.store_count()
    messages = fixes // per_message
    cpu0 = _cpu_s(srv.proc.pid)
    start = time.monotonic()
    db_file = str(srv.data_dir / "coverwatch.db")
    p = ctx.Process(
        target=mqtt_publish_process, args=(srv.site_id, db_file, messages, per_message, q)
    )
    p.start()
    target = base + messages * per_message
    first: float | None = None
    deadline = time.monotonic() + 300
    count = base
    while count < target and time.monotonic() < deadline:
        time.sleep(0.2)
        count = srv.store_count()
        if first is None and count > base:
            first = time.monotonic()
    done = time.monotonic()
    pub = q.get(timeout=60)
    p.join()
    stored = count - base
    return {
        "fixes": messages * per_message,
        "stored": stored,
        "per_message": per_message,
        "elapsed": done - start,
        "rate": stored / (done - start),
        "publish_s": pub["elapsed"],
        "server_cpu": _cpu_s(srv.proc.pid) - cpu0,
    }


# -- latency ---------------------------------------------------------------------------


async def _latency(srv: Server, samples: int) -> dict[str, Any]:
    alerts: dict[str, list[tuple[int, float]]] = {}
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        r = await client.post("/api/v1/login", json={"username": "bench", "password": PASSWORD})
        r.raise_for_status()
        ready = asyncio.Event()

        async def read_feed() -> None:
            async with client.stream("GET", "/api/v1/feed") as resp:
                async for line in resp.aiter_lines():
                    ready.set()
                    if not line.startswith("data: "):
                        continue
                    msg = orjson.loads(line[6:])
                    if msg.get("type") == "alert" and msg["post"].startswith("probe-"):
                        recv = time.time()
                        from coverwatch.domain.time import parse_time

                        alerts.setdefault(msg["post"], []).append(
                            (parse_time(msg["lapse_start"]), recv)
                        )

        feed = asyncio.create_task(read_feed())
        await asyncio.wait_for(ready.wait(), 10)
        hdr = {"Authorization": f"Bearer {srv.tokens[-1]}"}

        async def post(events: list[dict[str, Any]]) -> None:
            r = await client.post(
                "/api/v1/events",
                content=orjson.dumps(events),
                headers={**hdr, "Content-Type": "application/json"},
            )
            r.raise_for_status()

        def fix(i: int, t: int, at_post: bool) -> dict[str, Any]:
            x = 5000 + 100 * i + (0.0 if at_post else 50.0)
            return {"t": format_time(t), "kind": "fix", "officer": f"Q{i}", "x": x, "y": 5000.0}

        t = _now_us()
        await post(
            [
                {"t": format_time(t), "kind": "duty", "officer": f"Q{i}", "on": True}
                for i in range(PROBES)
            ]
            + [fix(i, t, True) for i in range(PROBES)]
        )
        await asyncio.sleep(LATENESS_S + 1)
        probes: list[tuple[str, int, float]] = []
        back: list[asyncio.Task[None]] = []

        async def come_back(i: int) -> None:
            await asyncio.sleep(0.5)
            await post([fix(i, _now_us(), True)])

        for k in range(samples):
            i = k % PROBES
            wall = time.time()
            t_leave = _now_us()
            await post([fix(i, t_leave, False)])
            probes.append((f"probe-{i}", t_leave, wall))
            back.append(asyncio.create_task(come_back(i)))
            await asyncio.sleep(0.3)
        await asyncio.gather(*back)
        await asyncio.sleep(LATENESS_S + 1.5)
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feed
    from_post: list[float] = []
    from_watermark: list[float] = []
    missing = 0
    for post_id, t_leave, wall in probes:
        hit = [recv for start, recv in alerts.get(post_id, []) if abs(start - t_leave) < 200_000]
        if not hit:
            missing += 1
            continue
        from_post.append(hit[0] - wall)
        from_watermark.append(hit[0] - (t_leave / US_PER_S + LATENESS_S))
    return {"from_post": from_post, "from_watermark": from_watermark, "missing": missing}


def run_latency(srv: Server, samples: int, background: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    seconds = samples * 0.3 + 2 * LATENESS_S + 8
    p = ctx.Process(
        target=http_load_process, args=(srv.url, srv.tokens[:-1], seconds, 500, background, q)
    )
    cpu0 = _cpu_s(srv.proc.pid)
    p.start()
    time.sleep(1.5)  # let the background load settle
    res = asyncio.run(_latency(srv, samples))
    load = q.get(timeout=seconds + 60)
    p.join()
    res["background_rate"] = load["accepted"] / load["elapsed"]
    res["server_cpu"] = (_cpu_s(srv.proc.pid) - cpu0) / load["elapsed"]
    return res


# -- main ------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    schema = f"cw_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(POSTGRES_URL, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="http-sqlite,http-pg,mqtt,latency")
    ap.add_argument("--seconds", type=float, default=15.0, help="HTTP load duration")
    ap.add_argument("--batch", type=int, default=2000, help="fixes per HTTP batch")
    ap.add_argument("--conns", type=int, default=4, help="concurrent HTTP connections")
    ap.add_argument("--mqtt-fixes", type=int, default=200_000)
    ap.add_argument("--samples", type=int, default=60, help="latency probes")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    rows: list[tuple[str, str, str, str]] = []
    print(
        f"machine: {os.cpu_count()} CPUs; server = `coverwatch serve` subprocess, "
        "load = separate process",
        flush=True,
    )

    def http(name: str, db_url: str | None) -> None:
        with (
            tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp,
            server(Path(tmp), db_url=db_url, tokens=args.conns) as srv,
        ):
            r = run_http(srv, args.seconds, args.batch)
        print(
            f"{name}: {r['accepted']} fixes in {r['elapsed']:.1f} s = {r['rate']:,.0f} fixes/s "
            f"(batch {args.batch}, {args.conns} connections; stored {r['stored']}, "
            f"late {r['late']}, failed {r['failed']}); server CPU "
            f"{100 * r['server_cpu'] / r['elapsed']:.0f} % of a core, load generator "
            f"{100 * r['cpu'] / r['elapsed']:.0f} %",
            flush=True,
        )
        rows.append(
            (
                name,
                f"{r['rate']:,.0f} fixes/s",
                ">= 20,000 fixes/s",
                "PASS" if r["rate"] >= 20_000 else "MISS",
            )
        )
        traccar.append(r["rate"])

    traccar: list[float] = []
    if "http-sqlite" in only:
        http("HTTP batch -> SQLite", None)
    if "http-pg" in only:
        with pg_schema() as url:
            http("HTTP batch -> PostgreSQL", url)
    if "mqtt" in only:
        for per in (100, 1):
            n = args.mqtt_fixes if per > 1 else args.mqtt_fixes // 4
            with (
                tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp,
                server(Path(tmp), mqtt=True) as srv,
            ):
                r = run_mqtt(srv, n, per)
            print(
                f"MQTT QoS 1, {per} fix(es)/message: {r['stored']}/{r['fixes']} stored in "
                f"{r['elapsed']:.1f} s = {r['rate']:,.0f} fixes/s "
                f"({r['rate'] / per:,.0f} messages/s; publisher done in {r['publish_s']:.1f} s);"
                f" server CPU {100 * r['server_cpu'] / r['elapsed']:.0f} %",
                flush=True,
            )
            rows.append(
                (
                    f"MQTT QoS 1 -> SQLite, {per}/msg",
                    f"{r['rate']:,.0f} fixes/s",
                    ">= 10,000 fixes/s",
                    "PASS" if r["rate"] >= 10_000 else "MISS",
                )
            )
    if "latency" in only:
        with (
            tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp,
            server(Path(tmp), tokens=3) as srv,
        ):
            r = run_latency(srv, args.samples, 5000.0)
        fw, fp = r["from_watermark"], r["from_post"]
        print(
            f"latency ({len(fp)} probes, {r['missing']} missing; background "
            f"{r['background_rate']:,.0f} fixes/s, server CPU {100 * r['server_cpu']:.0f} %): "
            f"from POST p50 {_pct(fp, 0.5) * 1000:.0f} ms p99 {_pct(fp, 0.99) * 1000:.0f} ms; "
            f"after the watermark may pass p50 {_pct(fw, 0.5) * 1000:.0f} ms "
            f"p99 {_pct(fw, 0.99) * 1000:.0f} ms",
            flush=True,
        )
        limit = LATENESS_S + 0.1
        p99 = _pct(fp, 0.99)
        ok = p99 <= limit and r["missing"] == 0 and len(fp) >= 50
        rows.append(
            (
                "fix -> SSE alert p99 (5k/s load)",
                f"{p99 * 1000:,.0f} ms",
                f"<= {limit * 1000:,.0f} ms",
                "PASS" if ok else "MISS",
            )
        )
    if traccar:
        best = max(traccar)
        print(
            f"vs Traccar's claimed ~{TRACCAR_MSGS_PER_S:,} messages/s: HTTP batch ingest "
            f"{best / TRACCAR_MSGS_PER_S:.1f}x (fixes, not messages: a batch carries many)"
        )
    print()
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'measure':<{w}}  {'result':>16}  {'target':>18}  verdict")
    for name, result, target, verdict in rows:
        print(f"{name:<{w}}  {result:>16}  {target:>18}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
