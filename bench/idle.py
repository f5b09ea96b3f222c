"""Idle cost of the distributed mode: PostgreSQL transactions/s with no events, by sites.

For each count of sites (default 20, 100, 1000) it makes a fresh PostgreSQL database,
writes that many fictional sites (a gate post whose rule applies in open hours, the
site closed: nothing lapses, so nothing happens but the nodes' own upkeep), starts one gateway
and one worker (``coverwatch serve --bus … --role``) over all of them against the local
NATS under a random ``cwb-…`` prefix, waits until the worker owns every site and the
nodes have settled, then, with no event sent, counts the database's committed and
rolled-back transactions (``pg_stat_database``) and the two processes' CPU time over a
window (and each node's CPU seconds until every site was owned: the start's). Idle cost
independent of the number of sites means the transactions/s stay flat while the sites
grow fifty-fold.

    PYTHONPATH=src .venv/bin/python bench/idle.py [--sites 20,100,1000] [--window 30] [--silent]

``--silent`` gives each site ``silent_after_s``, so the owner's check of silent devices
runs every second (its reads of the devices' newest reports are part of the idle cost).

Everything shares this machine's 2 cores with whatever else runs: the load average is
printed beside each row; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from coverwatch.bus import BusNames, connect, open_bucket
from coverwatch.cli.cluster import fresh_database

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
NATS_URL = os.environ.get("COVERWATCH_BENCH_NATS_URL", "nats://127.0.0.1:4222")
ADMIN = os.environ.get("COVERWATCH_BENCH_ADMIN_DB",
                       "postgresql://postgres@127.0.0.1:5432/postgres")


QUIET_SITE = """\
site: {site_id}
name: Idle Depot {n} (fictional)
origin: {{lat: 51.5, lon: -0.12}}
timezone: UTC
flags: {{open-hours: false}}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {{id: cover, need: 1, within_m: 25, grace_s: 10, when: open-hours}}
"""


def write_sites(directory: Path, count: int, silent: bool = False) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = directory / f"idle-{n:04d}.yaml"
        text = QUIET_SITE.format(site_id=f"idle-{n:04d}", n=n)
        if silent:  # the owner's check of silent devices runs (nobody is rostered)
            text = text.replace("timezone: UTC\n", "timezone: UTC\nsilent_after_s: 60\n")
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(sites: list[Path], data: Path, db: str, prefix: str, role: str,
           log: Path, src: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-c", "from coverwatch.cli import main; main()", "serve",
           *(a for s in sites for a in ("--site", str(s))), "--data-dir", str(data),
           "--db", db, "--bus", NATS_URL, "--bus-prefix", prefix, "--role", role,
           "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def _ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"server did not start: see {log}")


async def _owned(prefix: str) -> int:
    nc = await connect(NATS_URL)
    try:
        kv = await open_bucket(nc.jetstream(), BusNames(prefix).leases)
        try:
            keys = await kv.keys()
        except Exception:  # no keys yet
            return 0
        return sum(1 for k in keys if k.startswith("site."))
    finally:
        await nc.close()


async def _cleanup(prefix: str) -> None:
    names = BusNames(prefix)
    nc = await connect(NATS_URL)
    js = nc.jetstream()
    for stream in (names.stream, f"KV_{names.leases}", f"KV_{names.checkpoints}"):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
    await nc.close()


async def _owners(prefix: str) -> dict[str, str]:
    """Each site lease's owner (the worker id in its value)."""
    import orjson

    nc = await connect(NATS_URL)
    try:
        kv = await open_bucket(nc.jetstream(), BusNames(prefix).leases)
        out: dict[str, str] = {}
        with contextlib.suppress(Exception):  # no keys yet
            for key in await kv.keys():
                if key.startswith("site."):
                    with contextlib.suppress(Exception):
                        entry = await kv.get(key)
                        if entry.value:
                            out[key[5:]] = str(orjson.loads(entry.value)["owner"])
        return out
    finally:
        await nc.close()


async def _term_and_watch(proc: subprocess.Popen[bytes], prefix: str, count: int,
                          mine: set[str]) -> tuple[float | None, float | None, float]:
    """SIGTERM ``proc``; seconds until it exits and until no site's lease names ``mine``
    and all ``count`` are held (a watch on the leases bucket)."""
    import orjson

    nc = await connect(NATS_URL)
    owners: dict[str, str] = {}
    ready = asyncio.Event()

    async def follow() -> None:
        kv = await open_bucket(nc.jetstream(), BusNames(prefix).leases)
        async for entry in await kv.watchall():
            if entry is None:
                ready.set()
            elif entry.key.startswith("site."):
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    owners.pop(entry.key[5:], None)
                else:
                    owners[entry.key[5:]] = str(orjson.loads(entry.value)["owner"])

    task = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(ready.wait(), 60)
        load = os.getloadavg()[0]
        proc.terminate()
        sent = time.monotonic()
        exited = moved = None
        while time.monotonic() - sent < 600 and (exited is None or moved is None):
            if exited is None and proc.poll() is not None:
                exited = time.monotonic() - sent
            if moved is None and len(owners) == count and not set(owners.values()) & mine:
                moved = time.monotonic() - sent
            await asyncio.sleep(0.05)
        return exited, moved, load
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await nc.close()


def stop_one(count: int, work: Path, src: Path) -> dict[str, Any]:
    """SIGTERM a worker of ``count`` sites beside another: seconds until its process ended,
    and until the other owns every site (its leases released at once, or expired)."""
    database = f"ops_term_{uuid.uuid4().hex[:8]}"
    prefix = f"cwb-{uuid.uuid4().hex[:8]}"
    db = fresh_database(ADMIN, database)
    data = work / f"term-{count}-{uuid.uuid4().hex[:4]}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([sys.executable, "-c", "import sys; from coverwatch.storage import "
                        "upgrade; upgrade(sys.argv[1], sys.argv[2])", db, str(data)],
                       check=True, env={**os.environ, "PYTHONPATH": str(src)})
        sites = write_sites(data / "sites", count)
        started = time.monotonic()
        first, url = _serve(sites, data, db, prefix, "worker", data / "worker-1.log", src)
        procs.append(first)
        _ready(first, url, data / "worker-1.log")
        deadline = time.monotonic() + 900
        while len(owners := asyncio.run(_owners(prefix))) < count \
                and time.monotonic() < deadline:
            time.sleep(2)
        mine = set(owners.values())
        other, url = _serve(sites, data, db, prefix, "worker", data / "worker-2.log", src)
        procs.append(other)
        _ready(other, url, data / "worker-2.log")
        while time.monotonic() < deadline:  # the second has its share: both are running
            owners = asyncio.run(_owners(prefix))
            if len(owners) == count and len(set(owners.values()) - mine) == 1 and \
                    sum(1 for o in owners.values() if o in mine) >= count // 3:
                break
            time.sleep(2)
        ready_s = time.monotonic() - started
        held = sum(1 for o in owners.values() if o in mine)
        time.sleep(5)
        exited, moved, load = asyncio.run(_term_and_watch(first, prefix, count, mine))
        return {"sites": count, "held": held, "ready_s": ready_s, "exited": exited,
                "moved": moved, "code": first.poll(), "load": load}
    finally:
        _tear_down(procs, prefix, database)


def _tear_down(procs: list[subprocess.Popen[bytes]], prefix: str, database: str) -> None:
    """Stop the servers (killed after 60 s), delete the bus's streams and the database."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
    asyncio.run(_cleanup(prefix))
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _transactions(db: str) -> int:
    name = make_url(db).database
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PG_LOG = Path(os.environ.get("COVERWATCH_BENCH_PG_LOG",
                           "/var/log/postgresql/postgresql-15-main.log"))


def _statements(text: str, top: int = 12) -> list[tuple[int, str]]:
    """The statements logged (``log_statement=all``) in ``text``, counted by their first
    words (a table's name is enough to tell whose they are), most frequent first."""
    import re
    from collections import Counter

    counts: Counter[str] = Counter()
    for line in text.splitlines():
        m = re.search(r"LOG:  (?:statement|execute [^:]*): (.*)", line)
        if m:
            words = re.sub(r"\s+", " ", m.group(1)).strip()
            counts[words[:90]] += 1
    return [(n, w) for w, n in counts.most_common(top)]


def measure(count: int, window: float, settle: float, work: Path,
            src: Path, silent: bool = False, statements: bool = False) -> dict[str, Any]:
    """One row: ``count`` sites idle; transactions/s and CPU of the two nodes (with
    ``statements``, what PostgreSQL's statement log shows in the window)."""
    database = f"ops_idle_{uuid.uuid4().hex[:8]}"
    prefix = f"cwb-{uuid.uuid4().hex[:8]}"
    db = fresh_database(ADMIN, database)
    if statements:  # new sessions of this database only (set before the servers connect)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" SET log_statement = \'all\'')
    data = work / f"sites-{count}-{uuid.uuid4().hex[:4]}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Migrated by the code under test: a tree's servers refuse another tree's schema.
        subprocess.run([sys.executable, "-c", "import sys; from coverwatch.storage import "
                        "upgrade; upgrade(sys.argv[1], sys.argv[2])", db, str(data)],
                       check=True, env={**os.environ, "PYTHONPATH": str(src)})
        sites = write_sites(data / "sites", count, silent)
        started = time.monotonic()
        urls = []
        # One after the other (two servers starting together on a fresh data directory
        # race to create its audit key), the worker first: a gateway that ran alone while
        # the worker started would raise dead-man alerts, and live alerts are not idle.
        for role in ("worker", "gateway"):
            proc, url = _serve(sites, data, db, prefix, role, data / f"{role}.log", src)
            procs.append(proc)
            urls.append(url)
            _ready(proc, url, data / f"{role}.log")
        deadline = time.monotonic() + 600
        while asyncio.run(_owned(prefix)) < count and time.monotonic() < deadline:
            time.sleep(2)
        owned = asyncio.run(_owned(prefix))
        ready_s = time.monotonic() - started
        ready_cpu = [_cpu_s(p.pid) for p in procs]  # the start's CPU, each node
        time.sleep(settle)
        log_at = PG_LOG.stat().st_size if statements else 0
        tx0, cpu0 = _transactions(db), [_cpu_s(p.pid) for p in procs]
        t0 = time.monotonic()
        time.sleep(window)
        tx1, cpu1 = _transactions(db), [_cpu_s(p.pid) for p in procs]
        took = time.monotonic() - t0
        logged: list[tuple[int, str]] = []
        if statements:
            with PG_LOG.open("rb") as f:
                f.seek(log_at)
                logged = _statements(f.read().decode("utf-8", "replace"))
        return {"sites": count, "owned": owned, "ready_s": ready_s,
                "worker_start_cpu": ready_cpu[0], "gateway_start_cpu": ready_cpu[1],
                "tx_per_s": (tx1 - tx0) / took,
                "gateway_cpu": (cpu1[1] - cpu0[1]) / took,
                "worker_cpu": (cpu1[0] - cpu0[0]) / took, "load": os.getloadavg()[0],
                "statements": logged, "window": took}
    finally:
        _tear_down(procs, prefix, database)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sites", default="20,100,1000")
    ap.add_argument("--window", type=float, default=30.0, help="seconds counted")
    ap.add_argument("--settle", type=float, default=15.0,
                    help="seconds waited after every site is owned")
    ap.add_argument("--src", default=str(ROOT / "src"),
                    help="the code the servers run, comma-separated trees to compare them "
                         "interleaved (e.g. another worktree's src as the 'before')")
    ap.add_argument("--statements", action="store_true",
                    help=f"log the database's statements (log_statement=all, read from "
                         f"{PG_LOG}) and print the most frequent in the window")
    ap.add_argument("--silent", action="store_true",
                    help="sites with silent_after_s: the owner checks for silent devices")
    ap.add_argument("--term", action="store_true",
                    help="instead: two workers over the sites; SIGTERM the first and time "
                         "until its process ends and until the other owns every site")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cw-idle-"))
    srcs = [Path(p).resolve() for p in args.src.split(",")]
    if args.term:
        print(f"SIGTERM to a worker beside another; files in {work}")
        print(f"{'code':<28} {'sites':>6} {'held':>5} {'ready s':>8} {'exited s':>9} "
              f"{'all owned by the other s':>25} {'status':>6} {'load':>5}", flush=True)
        for count in (int(c) for c in args.sites.split(",")):
            for src in srcs:
                r = stop_one(count, work, src)
                ex = "-" if r["exited"] is None else f"{r['exited']:.2f}"
                mv = "-" if r["moved"] is None else f"{r['moved']:.2f}"
                print(f"{str(src)[-28:]:<28} {count:>6} {r['held']:>5} {r['ready_s']:>8.1f} "
                      f"{ex:>9} {mv:>25} {r['code']!s:>6} {r['load']:>5.1f}", flush=True)
        return
    print(f"idle cost: one gateway + one worker, {args.window:.0f} s window; files in {work}")
    print(f"{'code':<28} {'sites':>6} {'owned':>6} {'ready s':>8} {'start CPU wk+gw':>16} "
          f"{'PG tx/s':>9} {'tx/s/site':>10} {'gw CPU':>7} {'wk CPU':>7} {'load':>5}",
          flush=True)
    for count in (int(c) for c in args.sites.split(",")):
        for src in srcs:
            r = measure(count, args.window, args.settle, work, src, args.silent,
                        args.statements)
            start_cpu = f"{r['worker_start_cpu']:.1f}+{r['gateway_start_cpu']:.1f}"
            print(f"{str(src)[-28:]:<28} {count:>6} {r['owned']:>6.0f} {r['ready_s']:>8.1f} "
                  f"{start_cpu:>16} {r['tx_per_s']:>9.1f} {r['tx_per_s'] / count:>10.3f} "
                  f"{r['gateway_cpu']:>7.2f} {r['worker_cpu']:>7.2f} {r['load']:>5.1f}",
                  flush=True)
            for n, words in r["statements"]:
                print(f"    {n / r['window']:7.2f}/s  {words}", flush=True)


if __name__ == "__main__":
    main()
