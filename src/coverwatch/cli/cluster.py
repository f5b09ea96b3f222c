"""`make cluster`: one gateway and three workers on this machine, 20 fictional sites, a simulator.

``python -m coverwatch.cli.cluster [--sites 20]`` writes 20 fictional sites (copies of the
example Quay Depot, ``cluster-01`` … ``cluster-20``), then starts, against the local
NATS and PostgreSQL, four `coverwatch serve --bus … --db …` processes watching all of
them: a gateway on port 8000 and three workers (8001–8003) that share the sites out
by lease. It then plays four simulated officers per site through the gateway (one of
the two armed officers at each main gate takes breaks, so gates lapse and alerts are
raised). Kill a worker (its pid is printed) to watch the others take its sites over.
Ctrl-C stops everything.

``--nats-nodes 3`` starts three ``nats-server`` processes of its own instead (client ports
4231–4233, routes 6231–6233, data in ``<data-dir>/nats``) joined by cluster routes, and gives
every server the three URLs and ``--bus-replicas 3``: kill one NATS node to watch the
cluster carry on. ``--bus-replicas`` is passed to every server either way (1 by default on
the one local NATS).

Each run starts clean: the database ``coverwatch_cluster`` is created afresh,
and the bus names ``coverwatch-cluster-…`` (stream and buckets) are deleted
first. The demo's fixed logins are created, as in `make demo`: a demo only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
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
    image = (doc.get("background") or {}).get("image")
    if image:  # the plan's picture goes beside the copies (a path relative to the site file)
        shutil.copy(template.parent / image, directory / Path(image).name)
        doc["background"]["image"] = Path(image).name
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


def start_nats(nodes: int, directory: Path, port: int) -> tuple[
        list[subprocess.Popen[bytes]], str]:
    """``nodes`` nats-servers with JetStream joined by routes (client ports ``port``…,
    routes ``port + 2000``…); the processes and their URLs comma-separated."""
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(exe).exists():
        raise SystemExit("--nats-nodes: nats-server is not installed")
    shutil.rmtree(directory, ignore_errors=True)  # each run starts clean
    directory.mkdir(parents=True)
    routes = [port + 2000 + i for i in range(nodes)]
    procs = []
    for i in range(nodes):
        cmd = [exe, "-a", "127.0.0.1", "-p", str(port + i), "-js", "-sd",
               str(directory / f"n{i}"), "-n", f"{PREFIX}-n{i}"]
        if nodes > 1:
            cmd += ["--cluster_name", PREFIX, "--cluster", f"nats://127.0.0.1:{routes[i]}",
                    "--routes", ",".join(f"nats://127.0.0.1:{r}" for r in routes if r != routes[i])]
        with (directory / f"n{i}.log").open("ab") as out:
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs, ",".join(f"nats://127.0.0.1:{port + i}" for i in range(nodes))


async def nats_ready(url: str, replicas: int, timeout: float = 60.0) -> None:
    """Wait until a stream of ``replicas`` can be made (the cluster has formed)."""
    from nats.js import api

    from coverwatch.bus import connect

    nc = await connect(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                js = nc.jetstream(timeout=5)
                await js.add_stream(api.StreamConfig(
                    name=f"{PREFIX}-probe", subjects=[f"{PREFIX}-probe.>"],
                    num_replicas=replicas))
                await js.delete_stream(f"{PREFIX}-probe")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the NATS nodes at {url} did not form a cluster") from None
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


def _serve(sites: list[Path], data_dir: Path, db: str, bus: str, role: str, port: int,
           log: Path, prefix: str = PREFIX, replicas: int = 1) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from coverwatch.cli import main; main()", "serve",
           *(arg for site in sites for arg in ("--site", str(site))),
           "--data-dir", str(data_dir), "--db", db, "--bus", bus,
           "--bus-prefix", prefix, "--bus-replicas", str(replicas), "--role", role,
           "--port", str(port)]
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
    parser.add_argument("--nats-nodes", type=int, default=0,
                        help="start this many nats-servers of its own joined by routes "
                             "(instead of --bus)")
    parser.add_argument("--nats-port", type=int, default=4231,
                        help="the first of their client ports (routes: 2000 above)")
    parser.add_argument("--bus-replicas", type=int, default=None,
                        help="replicas of the stream and buckets (default: the NATS nodes "
                             "started here, at most 3; else 1)")
    args = parser.parse_args(argv)
    replicas = args.bus_replicas or min(max(args.nats_nodes, 1), 3)

    # SIGTERM as Ctrl-C: either way every server started here is stopped (they run in
    # sessions of their own, so nothing else would reach them).
    signal.signal(signal.SIGTERM, _interrupted)
    nats_procs: list[subprocess.Popen[bytes]] = []
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        if args.nats_nodes:
            args.data_dir.mkdir(parents=True, exist_ok=True)
            nats_procs, args.bus = start_nats(args.nats_nodes, args.data_dir / "nats",
                                              args.nats_port)
            asyncio.run(nats_ready(args.bus, replicas))
        db = fresh_database(args.admin_db, args.database)
        asyncio.run(fresh_bus(args.bus, args.bus_prefix))
        args.data_dir.mkdir(parents=True, exist_ok=True)
        sites = write_sites(args.template, args.data_dir / "sites", args.sites)
        tokens, control = _setup(db, args.data_dir, sites)
        roles = ["gateway"] + ["worker"] * args.workers
        for i, role in enumerate(roles):
            port = args.port + i
            log = args.data_dir / f"{role}-{port}.log"
            proc = _serve(sites, args.data_dir, db, args.bus, role, port, log, args.bus_prefix,
                          replicas)
            procs.append((f"{role} :{port}", proc))
            _wait_ready(f"http://127.0.0.1:{port}", proc, log)
        base = f"http://127.0.0.1:{args.port}"
        print(f"\ncoverwatch cluster: {len(sites)} fictional sites, gateway at {base}/sites "
              "(Ctrl-C stops all)")
        for name, proc in procs:
            print(f"  {name:<14} pid {proc.pid}")
        for i, proc in enumerate(nats_procs):
            print(f"  nats :{args.nats_port + i:<8} pid {proc.pid}")
        print(f"  bus {args.bus_prefix}-* at {args.bus} (R{replicas}), database "
              f"{args.database}, logs in {args.data_dir}/")
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
        stop_all(nats_procs)  # after the servers: they hand their sites over through NATS
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
