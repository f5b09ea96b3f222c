"""Live ingest benchmark: a real `coverwatch serve` process fed by a separate load process.

Measures, with durability as configured (SQLite WAL with synchronous=FULL, or
PostgreSQL; every batch committed before it is acknowledged):

  http-sqlite  batch HTTP ingest (POST /api/v1/events) into SQLite, fixes/s;
  http-pg      the same into PostgreSQL (a fresh schema, `coverwatch db upgrade` first);
  mqtt         MQTT QoS 1 into SQLite, stored/s, batches of fixes per message and one
               fix per message; against the system broker (COVERWATCH_BENCH_MQTT_URL,
               default 127.0.0.1:1883) or, with --mqtt-broker tuned|default, a private
               Mosquitto started on a free loopback port with its own config file
               (tuned: max_inflight_messages 1000, max_queued_messages 0);
  latency      fix-to-alert latency on the live feed (SSE) at 5 k fixes/s background load:
               a probe officer leaves a grace-0 post; the time from the POST of that fix
               (and from the moment the watermark may first pass it) to the alert message.

The site is FICTIONAL (a generated depot). Nothing here is timed by a test.

    .venv/bin/python bench/ingest.py                        # everything, ~3 minutes
    .venv/bin/python bench/ingest.py --only http-sqlite,latency --seconds 10
    .venv/bin/python bench/ingest.py --only mqtt --mqtt-broker tuned
    # this tree against a base tree, alternating, 3 rounds (ratios within one run):
    PYTHONPATH=src .venv/bin/python bench/ingest.py --only http-sqlite \
        --baseline-src ../wt-base/src --rounds 3
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
from benchkit import cpu_s, free_port, serve

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
MQTT_WINDOW = 300  # messages published but not yet stored (--mqtt-window)
MQTT_SETTINGS = {
    # Mosquitto's own defaults, written out (max_queued_messages drops beyond it).
    "default": {"max_inflight_messages": "20", "max_queued_messages": "1000"},
    # What docs/server.md recommends for coverwatch's subscriber.
    "tuned": {"max_inflight_messages": "1000", "max_queued_messages": "0"},
}
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




@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    db_url: str | None
    data_dir: Path
    tokens: list[str]
    site_id: str
    src: Path | None = None

    def store_count(self) -> int:
        return int(_with_store(self.src, self.db_url, self.data_dir, "count", 0))


# The store is opened by the tree the server runs (``--baseline-src``): this tree's code
# would migrate a fresh store past what an older server accepts (a new migration).
_STORE_SCRIPT = """
import json, sys
from pathlib import Path
from coverwatch.storage import open_store
what, db, data, n = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3]), int(sys.argv[4])
store = open_store(db, data)
try:
    if what == "count":
        print(json.dumps(int(store.count_events())))
    else:
        plain = [store.create_api_token(f"load-{i}", ["ingest"])[1] for i in range(n)]
        store.create_user("bench", sys.argv[5], ["supervisor"])
        print(json.dumps(plain))
finally:
    store.close()
"""


def _with_store(src: Path | None, db_url: str | None, data_dir: Path, what: str,
                tokens: int) -> Any:
    """``count``: the events stored; ``setup``: ``tokens`` ingest tokens and the bench user
    (returns the tokens), by this process or, with ``src``, by that tree's code."""
    if src is None:
        store = open_store(db_url, data_dir)
        try:
            if what == "count":
                return int(store.count_events())
            plain = [store.create_api_token(f"load-{i}", ["ingest"])[1] for i in range(tokens)]
            store.create_user("bench", PASSWORD, ["supervisor"])
            return plain
        finally:
            store.close()
    out = subprocess.run(
        [sys.executable, "-c", _STORE_SCRIPT, what, db_url or "", str(data_dir), str(tokens),
         PASSWORD],
        check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(src.resolve())})
    return orjson.loads(out.stdout.splitlines()[-1])


@contextlib.contextmanager
def server(
    work: Path, *, db_url: str | None = None, mqtt: str | None = None, tokens: int = 4,
    src: Path | None = None,
) -> Iterator[Server]:
    """Start `coverwatch serve` on a fresh store; yield once it is ready. ``src``: run the
    server from that tree's ``src`` (PYTHONPATH) instead of this process's coverwatch."""
    site_id = f"bench-{uuid.uuid4().hex[:8]}"
    site = work / "site.yaml"
    site.write_text(site_yaml(site_id))
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if db_url is not None:
        subprocess.run(
            [str(SCRIPT), "db", "upgrade", "--db", db_url], check=True, capture_output=True,
            env=None if src is None else {**os.environ, "PYTHONPATH": str(src.resolve())},
        )
    plain = _with_store(src, db_url, data_dir, "setup", tokens)
    port = free_port()
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
    if mqtt is not None:
        cmd += ["--mqtt", mqtt]
    env = None if src is None else {**os.environ, "PYTHONPATH": str(src.resolve())}
    with serve(cmd, work, env=env, ready="/readyz") as (proc, url):
        yield Server(proc, url, db_url, data_dir, plain, site_id, src)


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
    cpu0 = cpu_s(srv.proc.pid)
    p = ctx.Process(target=http_load_process, args=(srv.url, srv.tokens, seconds, batch, None, q))
    p.start()
    res = q.get(timeout=seconds + 120)
    p.join()
    res["server_cpu"] = cpu_s(srv.proc.pid) - cpu0
    res["stored"] = srv.store_count()
    res["rate"] = res["accepted"] / res["elapsed"]
    return dict(res)


# -- MQTT ------------------------------------------------------------------------------


@contextlib.contextmanager
def private_broker(work: Path, settings: dict[str, str]) -> Iterator[str]:
    """A Mosquitto of our own on a free loopback port; yields its mqtt:// URL."""
    port = free_port()
    conf = work / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             "sys_interval 1", "log_dest stderr", "log_type error", "log_type warning",
             "log_type notice"]
    conf.write_text("\n".join(lines + [f"{k} {v}" for k, v in settings.items()]) + "\n")
    conf.chmod(0o644)
    log = (work / "mosquitto.log").open("ab")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(work / 'mosquitto.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto not listening within 10 s")
            time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def drop_session(url: str, client_id: str) -> None:
    """Remove the server's persistent session from the broker (clean_session=True)."""
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def broker_dropped(url: str) -> int | None:
    """Mosquitto's $SYS/broker/publish/messages/dropped (all clients), None if unknown."""
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(url)
    got: list[int] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sys-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda c, u, m: got.append(int(m.payload))
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.subscribe("$SYS/broker/publish/messages/dropped")
    client.loop_start()
    deadline = time.monotonic() + 11  # retained, or published every sys_interval (10 s)
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    return got[0] if got else None


def mqtt_publish_process(
    url: str, site_id: str, db_file: str, messages: int, per_message: int, window: int,
    out: Any,
) -> None:
    """Publish at QoS 1 as fast as the server stores, keeping < window messages unstored.

    The window matters: Mosquitto's default max_queued_messages (1000) drops QoS 1
    messages queued for a subscriber beyond it, so an open-loop burst measures the
    broker's drops, not coverwatch. The broker counts a message until it has read
    its PUBACK, which comes after the commit, so its count can run a few hundred
    above ours: 800 was not enough (131 of 25,000 dropped), hence 300 by default.

    The messages go through `mosquitto_pub -l -q 1` (one message per stdin line,
    C, up to 1000 in flight): a paho publisher in Python tops out near 4 k
    messages/s here, below what the server stores.
    """
    import sqlite3
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    topic = f"coverwatch/{site_id}/events"
    pub = subprocess.Popen(
        ["mosquitto_pub", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 1883),
         "-i", f"bench-pub-{site_id}", "-t", topic, "-q", "1", "-M", "1000", "-l"],
        stdin=subprocess.PIPE,
    )
    assert pub.stdin is not None
    officers = 2000
    start = time.monotonic()
    db = sqlite3.connect(db_file)
    base = db.execute("SELECT count(*) FROM events").fetchone()[0]
    stored_msgs = 0
    chunk: list[bytes] = []
    for m in range(messages):
        if m - stored_msgs >= window:
            pub.stdin.write(b"".join(chunk))
            pub.stdin.flush()
            chunk = []
        while m - stored_msgs >= window:
            time.sleep(0.005)
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
        chunk.append(orjson.dumps(events[0] if per_message == 1 else events) + b"\n")
        if len(chunk) >= 50:
            pub.stdin.write(b"".join(chunk))
            chunk = []
    pub.stdin.write(b"".join(chunk))
    pub.stdin.close()  # mosquitto_pub sends what is left and waits for the PUBACKs
    pub.wait(timeout=120)
    elapsed = time.monotonic() - start
    out.put({"elapsed": elapsed})


def run_mqtt(
    srv: Server, url: str, fixes: int, per_message: int, window: int
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    # Wait for the server's subscription (its consumer reports mqtt connected on /metrics);
    # a short pause is enough: the persistent session would keep messages anyway.
    time.sleep(1.5)
    base = srv.store_count()
    dropped0 = broker_dropped(url)
    messages = fixes // per_message
    cpu0 = cpu_s(srv.proc.pid)
    start = time.monotonic()
    db_file = str(srv.data_dir / "coverwatch.db")
    p = ctx.Process(
        target=mqtt_publish_process,
        args=(url, srv.site_id, db_file, messages, per_message, window, q),
    )
    p.start()
    target = base + messages * per_message
    count = base
    last_change = done = time.monotonic()
    # Until all are stored, or nothing new for 10 s once the publisher is done
    # (the broker dropped some).
    while count < target:
        time.sleep(0.1)
        now = time.monotonic()
        n = srv.store_count()
        if n != count:
            count, last_change, done = n, now, now
        elif (not p.is_alive() and now - last_change > 10) or now - start > 600:
            break
    pub = q.get(timeout=60)
    p.join()
    dropped1 = broker_dropped(url)
    stored = count - base
    return {
        "fixes": messages * per_message,
        "stored": stored,
        "per_message": per_message,
        "elapsed": done - start,
        "rate": stored / (done - start),
        "publish_s": pub["elapsed"],
        "server_cpu": cpu_s(srv.proc.pid) - cpu0,
        "dropped": None if dropped0 is None or dropped1 is None else dropped1 - dropped0,
        "load": os.getloadavg()[0],
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
    cpu0 = cpu_s(srv.proc.pid)
    p.start()
    time.sleep(1.5)  # let the background load settle
    res = asyncio.run(_latency(srv, samples))
    load = q.get(timeout=seconds + 60)
    p.join()
    res["background_rate"] = load["accepted"] / load["elapsed"]
    res["server_cpu"] = (cpu_s(srv.proc.pid) - cpu0) / load["elapsed"]
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
    ap.add_argument(
        "--mqtt-broker", choices=["system", "default", "tuned"], default="system",
        help="system: COVERWATCH_BENCH_MQTT_URL; default|tuned: a private Mosquitto "
        "with its defaults or with max_inflight_messages 1000, max_queued_messages 0",
    )
    ap.add_argument("--mqtt-per-message", default="100,1", help="fixes per MQTT message")
    ap.add_argument(
        "--mqtt-window", type=int, default=None,
        help="messages the MQTT publisher keeps published but unstored "
        "(default 300; 50,000 with --mqtt-broker tuned, whose queue is unlimited)",
    )
    ap.add_argument("--samples", type=int, default=60, help="latency probes")
    ap.add_argument(
        "--baseline-src", type=Path, default=None,
        help="http-sqlite/http-pg: also run a server from this tree's src (e.g. a worktree of "
        "main), alternating with this one, and print the ratios",
    )
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --baseline-src: alternating rounds (this, base, this, ...)")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    rows: list[tuple[str, str, str, str]] = []
    print(
        f"machine: {os.cpu_count()} CPUs; server = `coverwatch serve` subprocess, "
        "load = separate process",
        flush=True,
    )

    def http_once(name: str, pg: bool, src: Path | None) -> dict[str, Any]:
        # A fresh data directory (and PostgreSQL schema) per run and per tree: a tree
        # with a newer migration must not leave its schema to an older one.
        with (
            tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp,
            pg_schema() if pg else contextlib.nullcontext() as db_url,
            server(Path(tmp), db_url=db_url, tokens=args.conns, src=src) as srv,
        ):
            r = run_http(srv, args.seconds, args.batch)
        r["per_cpu_s"] = r["accepted"] / max(r["server_cpu"], 1e-9)
        print(
            f"{name}: {r['accepted']} fixes in {r['elapsed']:.1f} s = {r['rate']:,.0f} fixes/s "
            f"(batch {args.batch}, {args.conns} connections; stored {r['stored']}, "
            f"late {r['late']}, failed {r['failed']}); server CPU "
            f"{100 * r['server_cpu'] / r['elapsed']:.0f} % of a core "
            f"= {r['per_cpu_s']:,.0f} fixes per server CPU-second, load generator "
            f"{100 * r['cpu'] / r['elapsed']:.0f} %; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        return r

    def http(name: str, pg: bool) -> None:
        if args.baseline_src is None:
            r = http_once(name, pg, None)
        else:
            got: dict[str, list[dict[str, Any]]] = {"this": [], "base": []}
            for _ in range(args.rounds):
                for which, src in (("this", None), ("base", args.baseline_src)):
                    got[which].append(http_once(f"{name} [{which}]", pg, src))

            def med(which: str, key: str) -> float:
                vals = sorted(x[key] for x in got[which])
                return vals[len(vals) // 2]

            print(
                f"{name}, {args.rounds} alternating rounds, medians: this "
                f"{med('this', 'rate'):,.0f} fixes/s ({med('this', 'per_cpu_s'):,.0f} per "
                f"server CPU-s), base {med('base', 'rate'):,.0f} fixes/s "
                f"({med('base', 'per_cpu_s'):,.0f} per CPU-s): this/base "
                f"{med('this', 'rate') / med('base', 'rate'):.2f}x fixes/s, "
                f"{med('this', 'per_cpu_s') / med('base', 'per_cpu_s'):.2f}x per server CPU-s",
                flush=True,
            )
            r = max(got["this"], key=lambda x: x["rate"])
        rows.append(
            (
                name,
                f"{r['rate']:,.0f} fixes/s",
                ">= 50,000 fixes/s",
                "PASS" if r["rate"] >= 50_000 else "MISS",
            )
        )
        traccar.append(r["rate"])

    traccar: list[float] = []
    if "http-sqlite" in only:
        http("HTTP batch -> SQLite", False)
    if "http-pg" in only:
        http("HTTP batch -> PostgreSQL", True)
    if "mqtt" in only:
        broker = args.mqtt_broker
        window = args.mqtt_window or (50_000 if broker == "tuned" else MQTT_WINDOW)
        settings = MQTT_SETTINGS.get(broker, {})
        described = (
            f"system broker {MQTT_URL}" if broker == "system"
            else "private broker " + ", ".join(f"{k} {v}" for k, v in settings.items())
        )
        for per in (int(x) for x in args.mqtt_per_message.split(",")):
            n = args.mqtt_fixes if per > 1 else args.mqtt_fixes // 4
            with (
                tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp,
                contextlib.ExitStack() as st,
            ):
                work = Path(tmp)
                url = MQTT_URL if broker == "system" else st.enter_context(
                    private_broker(work, settings))
                srv = st.enter_context(server(work, mqtt=url))
                r = run_mqtt(srv, url, n, per, window)
            if broker == "system":  # the server has stopped; its session stays on the broker
                drop_session(url, f"coverwatch-{srv.site_id}")
            drops = "unknown" if r["dropped"] is None else str(r["dropped"])
            print(
                f"MQTT QoS 1, {per} fix(es)/message ({described}; window {window}): "
                f"{r['stored']}/{r['fixes']} stored in "
                f"{r['elapsed']:.1f} s = {r['rate']:,.0f} fixes/s "
                f"({r['rate'] / per:,.0f} messages/s; publisher done in {r['publish_s']:.1f} s);"
                f" broker dropped {drops}; server CPU "
                f"{100 * r['server_cpu'] / r['elapsed']:.0f} %; load average {r['load']:.2f}",
                flush=True,
            )
            ok = r["rate"] >= 10_000 and r["stored"] == r["fixes"]
            rows.append(
                (
                    f"MQTT QoS 1 -> SQLite, {per}/msg ({broker})",
                    f"{r['rate']:,.0f} fixes/s",
                    ">= 10,000 fixes/s",
                    "PASS" if ok else "MISS",
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
