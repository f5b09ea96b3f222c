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


def measure(count: int, window: float, settle: float, work: Path,
            src: Path, silent: bool = False) -> dict[str, float]:
    """One row: ``count`` sites idle; transactions/s and CPU of the two nodes."""
    database = f"cwb_idle_{uuid.uuid4().hex[:8]}"
    prefix = f"cwb-{uuid.uuid4().hex[:8]}"
    db = fresh_database(ADMIN, database)
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
        tx0, cpu0 = _transactions(db), [_cpu_s(p.pid) for p in procs]
        t0 = time.monotonic()
        time.sleep(window)
        tx1, cpu1 = _transactions(db), [_cpu_s(p.pid) for p in procs]
        took = time.monotonic() - t0
        return {"sites": count, "owned": owned, "ready_s": ready_s,
                "worker_start_cpu": ready_cpu[0], "gateway_start_cpu": ready_cpu[1],
                "tx_per_s": (tx1 - tx0) / took,
                "gateway_cpu": (cpu1[1] - cpu0[1]) / took,
                "worker_cpu": (cpu1[0] - cpu0[0]) / took, "load": os.getloadavg()[0]}
    finally:
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sites", default="20,100,1000")
    ap.add_argument("--window", type=float, default=30.0, help="seconds counted")
    ap.add_argument("--settle", type=float, default=15.0,
                    help="seconds waited after every site is owned")
    ap.add_argument("--src", default=str(ROOT / "src"),
                    help="the code the servers run, comma-separated trees to compare them "
                         "interleaved (e.g. another worktree's src as the 'before')")
    ap.add_argument("--silent", action="store_true",
                    help="sites with silent_after_s: the owner checks for silent devices")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cw-idle-"))
    srcs = [Path(p).resolve() for p in args.src.split(",")]
    print(f"idle cost: one gateway + one worker, {args.window:.0f} s window; files in {work}")
    print(f"{'code':<28} {'sites':>6} {'owned':>6} {'ready s':>8} {'start CPU wk+gw':>16} "
          f"{'PG tx/s':>9} {'tx/s/site':>10} {'gw CPU':>7} {'wk CPU':>7} {'load':>5}",
          flush=True)
    for count in (int(c) for c in args.sites.split(",")):
        for src in srcs:
            r = measure(count, args.window, args.settle, work, src, args.silent)
            start_cpu = f"{r['worker_start_cpu']:.1f}+{r['gateway_start_cpu']:.1f}"
            print(f"{str(src)[-28:]:<28} {count:>6} {r['owned']:>6.0f} {r['ready_s']:>8.1f} "
                  f"{start_cpu:>16} {r['tx_per_s']:>9.1f} {r['tx_per_s'] / count:>10.3f} "
                  f"{r['gateway_cpu']:>7.2f} {r['worker_cpu']:>7.2f} {r['load']:>5.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
