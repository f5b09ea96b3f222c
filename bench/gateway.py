"""Cluster ingest through the gateway against one SQLite ``coverwatch serve`` (issue 26).

For each count of sites (default 20 and 100) and each source tree given (``--src``, to
compare a branch with its base in one run), interleaved round by round:

  single   one ``coverwatch serve`` over every site, SQLite in a fresh data directory;
  cluster  one gateway and one worker (``coverwatch serve --bus … --role``) over every
           site, PostgreSQL (a fresh database) and the local NATS (a random ``cwb-…``
           prefix, deleted after), the worker owning every site before the load starts.

The load is the issue's: ``--clients`` (8) concurrent HTTP clients, each posting batches of
``--batch`` (200) fixes to the sites in turn (``/api/v1/sites/<site>/events``), waiting for
each answer (the gateway answers after the commit and every PubAck) for ``--seconds``;
fixes acknowledged per second, and the ratio cluster / single of the same round and tree.
The driver, the servers, NATS and PostgreSQL share this machine's cores: the load average is
printed with every row; compare rows of one run.

    PYTHONPATH=src .venv/bin/python bench/gateway.py [--sites 20,100] [--seconds 20]
        [--src /path/to/base/src,src] [--rounds 2] [--only single --idle 20]
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
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
from benchkit import cpu_s, free_port, loadavg, wait_ready
from idle import ADMIN, NATS_URL, _cleanup, _owned
from ingest import site_yaml

from coverwatch.cli.cluster import fresh_database
from coverwatch.domain.time import format_time

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
OFFICERS = 10  # per site


def write_sites(directory: Path, count: int) -> tuple[list[str], list[Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    ids = [f"gw{count}-{n:03d}" for n in range(count)]
    paths = []
    for site_id in ids:
        path = directory / f"{site_id}.yaml"
        path.write_text(site_yaml(site_id), encoding="utf-8")
        paths.append(path)
    return ids, paths


def _cmd(paths: list[Path], data: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from coverwatch.cli import main; main()", "serve",
            *(a for p in paths for a in ("--site", str(p))), "--data-dir", str(data),
            "--port", str(port), *extra]


@contextlib.contextmanager
def _running(cmds: list[list[str]], src: Path, work: Path
             ) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    procs: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for i, cmd in enumerate(cmds):
            log = work / f"server-{i}.log"
            with log.open("ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            url = f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}"
            procs.append((proc, url))
            wait_ready(proc, url, log, timeout_s=600)
        yield procs
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _batch(site_n: int, seq: int, n: int) -> bytes:
    t = format_time(time.time_ns() // 1000)
    events = []
    for k in range(n):
        o = (seq * n + k) % OFFICERS
        events.append({"t": t, "kind": "fix", "officer": f"o{site_n}-{o}",
                       "x": float((o % 5) * 200), "y": float((o // 5) * 200),
                       "accuracy_m": 5.0})
    return orjson.dumps(events)


async def _load(url: str, token: str, sites: list[str], seconds: float, clients: int,
                batch: int) -> tuple[int, int, float]:
    """(fixes acknowledged, requests failed, seconds) of ``clients`` posting for ``seconds``."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=clients)) as http:
        for i, site in enumerate(sites):  # everyone on duty first (not counted)
            duty = [{"t": format_time(time.time_ns() // 1000), "kind": "duty",
                     "officer": f"o{i}-{o}", "on": True} for o in range(OFFICERS)]
            r = await http.post(f"/api/v1/sites/{site}/events", content=orjson.dumps(duty),
                                headers=headers)
            r.raise_for_status()
        done = failed = 0
        end = time.monotonic() + seconds

        async def client(c: int) -> None:
            nonlocal done, failed
            seq = c
            while time.monotonic() < end:
                n = seq % len(sites)
                r = await http.post(f"/api/v1/sites/{sites[n]}/events",
                                    content=_batch(n, seq, batch), headers=headers)
                if r.status_code == 200:
                    done += batch
                else:
                    failed += 1
                seq += clients

        start = time.monotonic()
        await asyncio.gather(*(client(c) for c in range(clients)))
        return done, failed, time.monotonic() - start


def _token(src: Path, db: str | None, data: Path) -> str:
    """An ingest token, made by the tree's own code (its migrations, not this driver's)."""
    code = ("import sys; from coverwatch.storage import open_store; "
            "s = open_store(sys.argv[1] or None, sys.argv[2]); "
            "print(s.create_api_token('load', ['ingest'])[1]); s.close()")
    out = subprocess.run([sys.executable, "-c", code, db or "", str(data)], check=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(src)})
    return out.stdout.decode().strip().splitlines()[-1]


def run_single(src: Path, ids: list[str], paths: list[Path], work: Path,
               args: argparse.Namespace) -> tuple[float, int, float, int]:
    data = work / "data"
    data.mkdir(parents=True)
    token = _token(src, None, data)
    with _running([_cmd(paths, data, free_port())], src, work) as procs:
        (proc, url), = procs
        if args.idle:  # settled, then the server's CPU with nothing sent
            time.sleep(20)
            idle0 = cpu_s(proc.pid)
            time.sleep(args.idle)
            args.idle_cpu = (cpu_s(proc.pid) - idle0) / args.idle
        cpu0 = cpu_s(proc.pid)
        done, failed, secs = asyncio.run(_load(url, token, ids, args.seconds, args.clients,
                                               args.batch))
        return done / secs, failed, cpu_s(proc.pid) - cpu0, done


def run_cluster(src: Path, ids: list[str], paths: list[Path], work: Path,
                args: argparse.Namespace) -> tuple[float, int, float, int]:
    data = work / "data"
    data.mkdir(parents=True)
    name = f"{args.db_prefix}_{uuid.uuid4().hex[:10]}"
    db = fresh_database(ADMIN, name)
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-c", "from coverwatch.cli import main; main()", "db",
                    "upgrade", "--db", db], check=True, capture_output=True, env=env)
    token = _token(src, db, data)
    prefix = f"cwb-{uuid.uuid4().hex[:8]}"
    bus = ("--db", db, "--bus", NATS_URL, "--bus-prefix", prefix)
    try:
        with _running([_cmd(paths, data, free_port(), *bus, "--role", "worker"),
                       _cmd(paths, data, free_port(), *bus, "--role", "gateway")],
                      src, work) as procs:
            deadline = time.monotonic() + 600
            while asyncio.run(_owned(prefix)) < len(ids):
                if time.monotonic() > deadline:
                    raise SystemExit("the worker did not take every site")
                time.sleep(1.0)
            cpu0 = [cpu_s(p.pid) for p, _ in procs]
            done, failed, secs = asyncio.run(_load(procs[1][1], token, ids, args.seconds,
                                                   args.clients, args.batch))
            cpu = sum(cpu_s(p.pid) - c for (p, _), c in zip(procs, cpu0, strict=True))
            return done / secs, failed, cpu, done
    finally:
        asyncio.run(_cleanup(prefix))
        with contextlib.suppress(Exception):
            _drop(name)


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sites", default="20,100")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--db-prefix", default="cwgw",
                    help="PostgreSQL database names (each run's is dropped after it)")
    ap.add_argument("--only", choices=("both", "single"), default="both",
                    help="single: one process only (many sites in one SQLite serve)")
    ap.add_argument("--idle", type=float, default=0.0,
                    help="single: seconds of the server's idle CPU measured before the load")
    ap.add_argument("--src", default=str(ROOT / "src"),
                    help="comma-separated source trees to compare (PYTHONPATH of the servers)")
    args = ap.parse_args(argv)
    trees = [Path(s).resolve() for s in args.src.split(",")]
    if args.only == "single":
        _single_only(trees, args)
        return
    print("| sites | tree | round | single fixes/s | cluster fixes/s | cluster / single "
          "| failed requests (single, cluster) | server CPU s (single, cluster) "
          "| server CPU ms per fix (single, cluster) | load |")
    print("|---:|---|---:|---:|---:|---:|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="cw-gateway-") as tmp:
        for count in (int(s) for s in args.sites.split(",")):
            ids, paths = write_sites(Path(tmp) / f"sites-{count}", count)
            for rnd in range(args.rounds):
                for tree in trees:
                    work = Path(tmp) / f"{count}-{rnd}-{trees.index(tree)}"
                    (work / "s").mkdir(parents=True)
                    (work / "c").mkdir(parents=True)
                    single = run_single(tree, ids, paths, work / "s", args)
                    cluster = run_cluster(tree, ids, paths, work / "c", args)
                    print(f"| {count} | {tree.parent.name} | {rnd + 1} | {single[0]:,.0f} "
                          f"| {cluster[0]:,.0f} | {cluster[0] / single[0]:.2f} "
                          f"| {single[1]}, {cluster[1]} | {single[2]:.1f}, {cluster[2]:.1f} "
                          f"| {_per_fix(single):.3f}, {_per_fix(cluster):.3f} "
                          f"| {loadavg()} |", flush=True)


def _single_only(trees: list[Path], args: argparse.Namespace) -> None:
    print("| sites | tree | round | idle CPU, ms per site per s | fixes/s | failed requests "
          "| server CPU ms per fix (duty warm-up included) | load |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="cw-gateway-") as tmp:
        for count in (int(s) for s in args.sites.split(",")):
            ids, paths = write_sites(Path(tmp) / f"sites-{count}", count)
            for rnd in range(args.rounds):
                for n, tree in enumerate(trees):
                    work = Path(tmp) / f"{count}-{rnd}-{n}"
                    work.mkdir(parents=True)
                    args.idle_cpu = float("nan")
                    single = run_single(tree, ids, paths, work, args)
                    print(f"| {count} | {tree.parent.name} | {rnd + 1} "
                          f"| {1000.0 * args.idle_cpu / count:.2f} | {single[0]:,.0f} "
                          f"| {single[1]} | {_per_fix(single):.3f} | {loadavg()} |", flush=True)


def _per_fix(run: tuple[float, int, float, int]) -> float:
    return 1000.0 * run[2] / run[3] if run[3] else float("nan")


if __name__ == "__main__":
    main()
