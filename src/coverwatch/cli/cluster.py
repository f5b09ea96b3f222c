"""`make cluster`: one gateway and three workers on this machine, 20 fictional sites, a simulator.

``python -m coverwatch.cli.cluster [--sites 20]`` writes 20 fictional sites (copies of the
example Quay Depot, ``cluster-01`` … ``cluster-20``), then starts, against the local
NATS and PostgreSQL, four `coverwatch serve --bus … --db …` processes watching all of
them: a gateway on port 8000 and three workers (8001–8003) that share the sites out
by lease. It then plays four simulated officers per site through the gateway (one of
the two armed officers at each main gate takes breaks, so gates lapse and alerts are
raised). Kill a worker (its pid is printed) to watch the others take its sites over.
Ctrl-C stops everything.

Each run starts clean: the database ``coverwatch_cluster`` is created afresh,
and the bus names ``coverwatch-cluster-…`` (stream and buckets) are deleted
first. The demo's fixed logins are created, as in `make demo`: a demo only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import yaml
from sqlalchemy.engine import make_url

from coverwatch.cli.demo import DEMO_USERS, SECOND, SimOfficer, simulate

__all__ = ["main", "stop_all"]

PREFIX = "coverwatch-cluster"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create the cluster's database; its URL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def fresh_bus(url: str, prefix: str = PREFIX) -> None:
    from coverwatch.bus import BusNames, connect

    names = BusNames(prefix)
    nc = await connect(url)
    js = nc.jetstream()
    for stream in (names.stream, f"KV_{names.leases}", f"KV_{names.checkpoints}"):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
    await nc.close()


def write_sites(template: Path, directory: Path, count: int) -> list[Path]:
    """``count`` fictional sites: the template under new ids and names."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(template.read_text(encoding="utf-8"))
    paths = []
    for n in range(1, count + 1):
        doc["site"] = f"cluster-{n:02d}"
        doc["name"] = f"Cluster Site {n:02d} (fictional)"
        path = directory / f"cluster-{n:02d}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def _officers(n: int) -> list[SimOfficer]:
    # Officer ids are unique across the deployment.
    return [SimOfficer(f"C{n:02d}-{o.name}", o.capabilities, o.mode, o.at) for o in SECOND]


def _setup(db: str, data_dir: Path, sites: list[Path]) -> tuple[list[dict[str, str]], str]:
    from coverwatch.formats.sitefile import load_site_document
    from coverwatch.storage import open_store, upgrade
    from coverwatch.storage.sites import key_for_site, site_store

    upgrade(db, data_dir)
    store = open_store(db, data_dir)
    try:
        for username, (password, roles) in DEMO_USERS.items():
            store.create_user(username, password, roles)
        tokens = []
        for i, path in enumerate(sites):
            site_id = load_site_document(path).site.id
            at = site_store(store, key_for_site(store, site_id, first=i == 0))
            tokens.append({o.name: at.create_device(f"phone-{o.name.lower()}", o.name)[1]
                           for o in _officers(i + 1)})
        _, control = store.create_api_token("cluster-control-room", ["ingest"])
    finally:
        store.close()
    return tokens, control


def _serve(sites: list[Path], data_dir: Path, db: str, bus: str, role: str, port: int,
           log: Path, prefix: str = PREFIX) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from coverwatch.cli import main; main()", "serve",
           *(arg for site in sites for arg in ("--site", str(site))),
           "--data-dir", str(data_dir), "--db", db, "--bus", bus,
           "--bus-prefix", prefix, "--role", role, "--port", str(port)]
    with log.open("ab") as out:
        # Its own process group: Ctrl-C reaches the children through us, in order.
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not start; see {log}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=Path("examples/quay/site.yaml"),
                        help="the site every fictional site copies")
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=Path("data/cluster"))
    parser.add_argument("--bus", default=os.environ.get("COVERWATCH_BUS",
                                                        "nats://127.0.0.1:4222"))
    parser.add_argument("--admin-db", default=ADMIN_URL,
                        help="a PostgreSQL URL allowed to create databases")
    parser.add_argument("--database", default="coverwatch_cluster")
    parser.add_argument("--bus-prefix", default=PREFIX)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--port", type=int, default=8000, help="the gateway's; workers follow")
    args = parser.parse_args(argv)

    db = fresh_database(args.admin_db, args.database)
    asyncio.run(fresh_bus(args.bus, args.bus_prefix))
    args.data_dir.mkdir(parents=True, exist_ok=True)
    sites = write_sites(args.template, args.data_dir / "sites", args.sites)
    tokens, control = _setup(db, args.data_dir, sites)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    # SIGTERM as Ctrl-C: either way every server started here is stopped (they run in
    # sessions of their own, so nothing else would reach them).
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        roles = ["gateway"] + ["worker"] * args.workers
        for i, role in enumerate(roles):
            port = args.port + i
            log = args.data_dir / f"{role}-{port}.log"
            proc = _serve(sites, args.data_dir, db, args.bus, role, port, log, args.bus_prefix)
            procs.append((f"{role} :{port}", proc))
            _wait_ready(f"http://127.0.0.1:{port}", proc, log)
        base = f"http://127.0.0.1:{args.port}"
        print(f"\ncoverwatch cluster: {len(sites)} fictional sites, gateway at {base}/sites "
              "(Ctrl-C stops all)")
        for name, proc in procs:
            print(f"  {name:<14} pid {proc.pid}")
        print(f"  bus {args.bus_prefix}-*, database {args.database}, logs in {args.data_dir}/")
        print("Demo logins (this demo only; never use these passwords elsewhere):")
        for username, (password, roles_) in DEMO_USERS.items():
            print(f"  {username:<11} {password:<20} {', '.join(roles_)}")
        print(f"Simulating {4 * len(sites)} officers through the gateway. `kill -9` a "
              "worker's pid:")
        print("the others take its sites over within seconds.\n")

        async def everyone() -> None:
            await asyncio.gather(*(
                simulate(base, tokens[i], control, officers=_officers(i + 1),
                         site=f"cluster-{i + 1:02d}", gates=("main-gate",))
                for i in range(len(sites))))

        asyncio.run(everyone())
    except KeyboardInterrupt:
        pass
    finally:
        stop_all([proc for _, proc in procs])
        print("cluster stopped")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_all(procs: list[subprocess.Popen[bytes]], wait_s: float = 15.0) -> None:
    """SIGTERM every server (workers first: they hand over), SIGKILL any still there after
    ``wait_s``; a second Ctrl-C or SIGTERM meanwhile does not cut this short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for proc in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


if __name__ == "__main__":
    main()
