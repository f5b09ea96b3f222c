"""A fault campaign, Jepsen-style: the cluster under load while a nemesis kills and pauses.

    PYTHONPATH=src python bench/faults.py [--minutes 10] [--seed 1] [--keep DIR]

It starts a small cluster of its own: three ``nats-server`` processes joined by
routes (streams and buckets R3), a PostgreSQL schema of its own in the ``test``
database, two gateways and two workers (``coverwatch serve --bus … --role``) over
three sites. A client sends each site's officer's fixes (at the gate, then away
longer than the grace, again and again) to a gateway, moving to another and
re-sending the same event when a request fails, and records every acknowledged
upload. A seeded nemesis, one fault at a time, SIGKILLs (then restarts) or
SIGSTOPs (then continues) a worker, a gateway or a NATS node, or cuts one of
them off the network for a while and heals it: where this process may make
network namespaces (root, iproute2's ``ip netns``), NATS node 3, gateway 2 and
worker 2 each run in a namespace of their own (``netns.py``), joined to this one
by a veth pair, and a cut takes the pair's link down (no packet passes either
way, nothing is closed) and a heal brings it up. Where namespaces cannot be made
the campaign runs without cuts and says why (under CI=true it fails instead: CI
runs as root on a machine with iproute2).

Then, with every process healed and the load stopped, the checker verifies from the
history and the stores:

- every acknowledged event is stored, and every stored event is in its site's
  stream exactly once (so evaluated: the stream is the evaluation's input);
- each site's final checkpoint (its owner's engine) is past the end and its lapses
  equal a single-process replay of the site's stored on-time events, and the alerts
  in PostgreSQL are exactly the replay's alerted lapses, each raised once;
- no write carried a stale epoch: triggers the campaign adds to its schema note every
  write to ``alerts`` and ``audit`` with the epoch its transaction was fenced at and the
  site's fence as that transaction saw it; they must be equal, every lapse alert write
  must be fenced, and every ``alert.raised`` is single (writes the fence refused, logged
  by the workers, are counted).

It prints the history's summary and the verdict (exit status 1 if it fails).
``tests/integration/test_bus_faults.py`` runs 45 s of it with a fixed seed.
The cluster's pieces are the integration tests' (``tests/integration``: clusterkit,
natskit, test_live_equivalence's replay), not a copy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "bench", ROOT / "tests", ROOT / "tests" / "integration"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import httpx  # noqa: E402
from clusterkit import (  # noqa: E402
    SITES,
    ServeProcess,
    events_of,
    postgres_schema,
    read_subject,
    replayable,
    site_args,
    write_sites,
)
from natskit import NatsCluster, PrivateNats, unique_names, wait_for  # noqa: E402
from netns import Host, Relays, namespaces_unavailable  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from test_live_equivalence import replay_lapses  # noqa: E402

from coverwatch.bus import BusNames, Checkpoints, connect, open_bucket  # noqa: E402
from coverwatch.domain.time import US_PER_S, format_time, parse_time  # noqa: E402
from coverwatch.formats.sitefile import load_site  # noqa: E402
from coverwatch.reports.replay import lapse_record  # noqa: E402
from coverwatch.server.buscover import BusCover  # noqa: E402
from coverwatch.server.clusterworker import checkpoint_secret  # noqa: E402
from coverwatch.storage import Store, open_store, row_key  # noqa: E402
from coverwatch.storage.sites import key_for_site, site_store  # noqa: E402
from coverwatch.storage.tables import bus_fences  # noqa: E402

if TYPE_CHECKING:
    from coverwatch.server.unit import SiteUnit

__all__ = ["Campaign", "main", "partitions_unavailable", "run"]

AT_GATE_S, AWAY_S = 12.0, 16.0  # the sites' grace is 10 s: each walk away is an alert
SEND_EVERY_S = 0.5
REPLICAS = 3
FENCED_LINE = re.compile(r"write by lease epoch|a newer owner holds the fence")
# Every write to the tables an owner writes is noted with the epoch it was checked at
# (``coverwatch.fence_epoch``, set by storage.busoutbox.check in the write's transaction;
# empty for an unfenced write) and the site's fence as that transaction sees it.
FENCE_AUDIT = """
CREATE TABLE cw_fence_writes (tbl text, site text, what text, written_epoch bigint,
                              fence_epoch bigint);
CREATE FUNCTION cw_note_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO cw_fence_writes VALUES ('alerts', NEW.site, NEW.kind,
    NULLIF(current_setting('coverwatch.fence_epoch', true), '')::bigint,
    (SELECT epoch FROM bus_fences WHERE site = NEW.site));
  RETURN NEW;
END $$;
CREATE FUNCTION cw_note_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO cw_fence_writes VALUES ('audit', NEW.site, NEW.action,
    NULLIF(current_setting('coverwatch.fence_epoch', true), '')::bigint,
    (SELECT epoch FROM bus_fences WHERE site = NEW.site));
  RETURN NEW;
END $$;
CREATE TRIGGER cw_alerts AFTER INSERT OR UPDATE ON alerts
  FOR EACH ROW EXECUTE FUNCTION cw_note_alert();
CREATE TRIGGER cw_audit AFTER INSERT ON audit FOR EACH ROW EXECUTE FUNCTION cw_note_audit();
"""


@dataclass
class Campaign:
    """What happened: acknowledged uploads, faults, failed requests."""

    seed: int
    acked: dict[str, list[tuple[str, int]]] = field(  # site -> (kind, t_us) acknowledged
        default_factory=lambda: {s: [] for s in SITES})
    faults: list[tuple[float, str, str, float]] = field(default_factory=list)
    failed_requests: int = 0
    sent: int = 0
    started: float = field(default_factory=time.monotonic)

    def at(self) -> float:
        return time.monotonic() - self.started


class HostedNats(PrivateNats):
    """A NATS node of the cluster run inside a :class:`Host` (so a cut isolates it).

    It listens on the host's address; relays on 127.0.0.1 at its old ports keep the
    other nodes' routes and the clients' URLs to it unchanged, and relays on the
    host's end of the pair carry its routes out to the other nodes.
    """

    def __init__(self, base: PrivateNats, host: Host, relays: Relays) -> None:
        assert base.cluster is not None
        super().__init__(base.data_dir, name=base.name, cluster=base.cluster)
        self.port, self.host = base.port, host
        route_port, others, self.cluster_name = base.cluster
        self.route_port = route_port
        self.out_routes = [relays.add(host.host_ip, ("127.0.0.1", p)) for p in others]
        relays.add("127.0.0.1", (host.ip, self.port), port=self.port)
        relays.add("127.0.0.1", (host.ip, route_port), port=route_port)

    def start(self) -> None:
        ip = self.host.ip
        args = [self.exe, "-a", ip, "-p", str(self.port), "-js", "-sd", str(self.data_dir),
                "-n", str(self.name), "--cluster_name", self.cluster_name,
                "--cluster", f"nats://{ip}:{self.route_port}",
                "--routes", ",".join(f"nats://{self.host.host_ip}:{p}"
                                     for p in self.out_routes)]
        self.proc = subprocess.Popen(self.host.wrap(args), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((ip, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("nats-server in its namespace did not start")


class Network:
    """The hosts a cut can isolate: NATS node 3, gateway 2 and worker 2, one each."""

    def __init__(self) -> None:
        self.relays = Relays()
        self.hosts: dict[str, Host] = {}
        try:
            for i, name in enumerate(("nats3", "gateway2", "worker2")):
                self.hosts[name] = Host(i)
        except Exception:
            self.close()
            raise

    def host_nats(self, nats: NatsCluster) -> None:
        nats.servers[2] = HostedNats(nats.servers[2], self.hosts["nats3"], self.relays)

    def place(self, proc: ServeProcess, name: str, db: str, nats: NatsCluster) -> None:
        """Run ``proc`` in its host: PostgreSQL and every NATS node through relays."""
        host = self.hosts[name]
        pg = make_url(db)
        pg_port = self.relays.add(host.host_ip, (pg.host or "127.0.0.1", pg.port or 5432))
        hosted_db = pg.set(host=host.host_ip, port=pg_port).render_as_string(
            hide_password=False)
        bus = ",".join(f"nats://{host.host_ip}:{self.relays.add(host.host_ip, target)}"
                       for target in _nats_targets(nats))
        cmd = [hosted_db if a == db else bus if a == nats.url else a for a in proc.cmd]
        proc.cmd = host.wrap([*cmd, "--host", host.ip])
        proc.url = f"http://{host.ip}:{proc.port}"

    def heal(self) -> None:
        for host in self.hosts.values():
            if host.is_cut:
                host.heal()

    def close(self) -> None:
        for host in self.hosts.values():
            host.close()
        self.relays.close()


def _nats_targets(nats: NatsCluster) -> list[tuple[str, int]]:
    return [(s.host.ip if isinstance(s, HostedNats) else "127.0.0.1", s.port)
            for s in nats.servers]


class Cluster:
    """The campaign's processes: NATS nodes, gateways, workers (all restartable)."""

    def __init__(self, tmp: Path, db: str, names: BusNames, nats: NatsCluster,
                 paths: dict[str, Path], network: Network | None = None) -> None:
        first, *more = paths.values()
        every_site = site_args(more)
        data = tmp / "data"

        def serve(role: str, name: str) -> ServeProcess:
            p = ServeProcess(first, data, db, names, role, tmp / f"{name}.log", *every_site,
                             "--bus-replicas", str(REPLICAS), bus_url=nats.url)
            if network is not None and name in network.hosts:
                network.place(p, name, db, nats)
            return p

        self.nats = nats
        self.network = network
        self.gateways = [serve("gateway", f"gateway{i}") for i in (1, 2)]
        self.workers = [serve("worker", f"worker{i}") for i in (1, 2)]

    def start(self) -> None:
        for p in (*self.gateways, *self.workers):
            p.start()

    def live_gateways(self) -> list[ServeProcess]:
        return [g for g in self.gateways if g.running]

    def heal(self) -> None:
        if self.network is not None:
            self.network.heal()
        for n in self.nats.servers:
            if n.proc is None or n.proc.poll() is not None:
                n.proc = None
                n.start()
            else:
                n.signal(signal.SIGCONT)
        for p in (*self.gateways, *self.workers):
            if p.running:
                p.signal(signal.SIGCONT)
            else:
                p.start()

    def stop(self) -> None:
        for p in (*self.workers, *self.gateways):
            p.stop()
        self.nats.stop()


def _nemesis(cluster: Cluster, history: Campaign, rng: random.Random,
             stop: threading.Event) -> None:
    """One fault at a time: pick a victim and a fault, hold it, heal, let it settle."""
    while not stop.wait(rng.uniform(2.0, 5.0)):
        kind = rng.choice(["worker", "worker", "gateway", "nats"])
        fault = rng.choice(["kill", "stop", "cut"] if cluster.network else ["kill", "stop"])
        # A cut is held past the lease (6 s) as often as not: the cut-off owner's sites move.
        hold = rng.uniform(4.0, 15.0) if fault == "cut" else rng.uniform(2.0, 8.0)
        victim: ServeProcess | PrivateNats
        if fault == "cut":  # the one of its kind that runs in a host of its own
            victim = {"worker": cluster.workers[1], "gateway": cluster.gateways[1],
                      "nats": cluster.nats.servers[2]}[kind]
        elif kind == "worker":
            victim = rng.choice(cluster.workers)
        elif kind == "gateway":
            victim = rng.choice(cluster.gateways)
        else:
            victim = rng.choice(cluster.nats.servers)
        group: list[Any] = {"worker": cluster.workers, "gateway": cluster.gateways,
                            "nats": cluster.nats.servers}[kind]
        name = f"{kind}{group.index(victim) + 1}"
        history.faults.append((round(history.at(), 1), fault, name, round(hold, 1)))
        print(f"  {history.at():7.1f}s nemesis: {fault} {name} for {hold:.1f}s", flush=True)
        try:
            if fault == "cut":
                assert cluster.network is not None
                host = cluster.network.hosts[name]
                host.cut()
                stop.wait(hold)
                host.heal()
                continue
            if fault == "kill":
                if isinstance(victim, ServeProcess):
                    victim.kill()
                else:
                    victim.signal(signal.SIGKILL)
            else:
                victim.signal(signal.SIGSTOP)
            stop.wait(hold)
            if fault == "kill":
                if isinstance(victim, PrivateNats):
                    victim.proc = None
                victim.start()
            else:
                victim.signal(signal.SIGCONT)
        except Exception as e:  # a restart that failed is healed at the end
            print(f"  nemesis: healing {name} failed: {e}", flush=True)


def _send(cluster: Cluster, token: str, history: Campaign, rng: random.Random,
          stop: threading.Event) -> None:
    """Each site's officer's fixes, re-sent (same event) until some gateway acknowledges."""
    began = time.time()
    for site, (_, officer) in SITES.items():
        _deliver(cluster, token, history, rng, site, {
            "t": format_time(time.time_ns() // 1000), "kind": "duty", "officer": officer,
            "on": True}, stop)
    while not stop.wait(SEND_EVERY_S):
        phase = (time.time() - began) % (AT_GATE_S + AWAY_S)
        x = 0.0 if phase < AT_GATE_S else 80.0
        for site, (_, officer) in SITES.items():
            _deliver(cluster, token, history, rng, site, {
                "t": format_time(time.time_ns() // 1000), "kind": "fix", "officer": officer,
                "x": x, "y": 0.0, "accuracy_m": 5}, stop)


def _deliver(cluster: Cluster, token: str, history: Campaign, rng: random.Random, site: str,
             event: dict[str, Any], stop: threading.Event) -> None:
    history.sent += 1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        gateways = cluster.live_gateways()
        if gateways:
            gw = rng.choice(gateways)
            try:
                r = httpx.post(f"{gw.url}/api/v1/sites/{site}/events", json=[event],
                               headers={"Authorization": f"Bearer {token}"}, timeout=3.0)
                if r.status_code == 200:
                    history.acked[site].append((event["kind"], _t_us(event["t"])))
                    return
            except httpx.HTTPError:
                pass
        history.failed_requests += 1
        time.sleep(0.2)
    print(f"  an event for {site} was never acknowledged (given up)", flush=True)


def _t_us(text: str) -> int:
    return parse_time(text)


def _final_covers(url: str, names: BusNames, paths: dict[str, Path], store: Store,
                  end_us: int, timeout: float) -> dict[str, BusCover] | None:
    secret = checkpoint_secret(cast("SiteUnit", SimpleNamespace(store=store)))

    async def covers() -> dict[str, BusCover] | None:
        nc = await connect(url)
        try:
            cps = Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints))
            out = {}
            for site in SITES:
                cp = await cps.load(site)
                if cp is None or cp.state is None:
                    return None
                cover = BusCover(load_site(paths[site]), secret=secret, state=cp.state)
                if cover.live.horizon <= end_us + US_PER_S:
                    return None
                out[site] = cover
            return out
        except Exception:
            return None
        finally:
            await nc.close()

    if not asyncio.run(wait_for(covers, timeout, step=1.0)):
        return None
    return asyncio.run(covers())


def check(history: Campaign, cluster: Cluster, store: Store, names: BusNames,
          paths: dict[str, Path], tmp: Path, end_us: int) -> list[str]:
    """The verdict's failures (empty: every property held)."""
    problems: list[str] = []
    covers = _final_covers(cluster.nats.url, names, paths, store, end_us, timeout=180)
    if covers is None:
        return ["no final checkpoint past the end for some site within 180 s"]
    refused = 0
    for w in cluster.workers:
        refused += len(FENCED_LINE.findall(w.log.read_text(errors="replace")))
    with store.engine.connect() as conn:
        fences = dict(conn.execute(select(bus_fences.c.site, bus_fences.c.epoch)).all())
        writes = conn.exec_driver_sql(
            "SELECT tbl, site, what, written_epoch, fence_epoch FROM cw_fence_writes").all()
    fenced = [w for w in writes if w.written_epoch is not None]
    stale = [w for w in fenced if w.written_epoch != w.fence_epoch]
    if stale:
        problems.append(f"{len(stale)} write(s) with a stale epoch: {stale[:3]}")
    # Lapse alerts are written only by owners here (no acknowledgements, no SOS): fenced.
    unfenced = [w for w in writes if w.tbl == "alerts" and w.what == "lapse"
                and w.written_epoch is None]
    if unfenced:
        problems.append(f"{len(unfenced)} lapse alert write(s) without a fence epoch")
    if not fenced:
        problems.append("no fenced write was seen: the epoch check saw nothing")
    for site in SITES:
        key = key_for_site(store, site)
        svc = site_store(store, key)
        stored = svc.events_since(0, limit=1_000_000)
        have = Counter((r["kind"], int(r["t_us"])) for r in stored)
        lost = [a for a in history.acked[site] if not have[a]]
        if lost:
            problems.append(f"{site}: {len(lost)} acknowledged event(s) not stored: {lost[:3]}")
        keys = sorted(row_key(r) for r in stored)
        published = sorted(m.key or "" for m in events_of(
            asyncio.run(read_subject(names, site, cluster.nats.url))))
        if published != keys:
            missing = set(keys) - set(published)
            doubled = len(published) - len(set(published))
            problems.append(f"{site}: stream and store differ ({len(missing)} stored event(s) "
                            f"not in the stream, {doubled} in it twice)")
            for r in stored:  # what a diagnosis needs: the row, its commit, its time
                if row_key(r) in missing:
                    print(f"  {site}: not in the stream: id {r.get('id')} key {row_key(r)} kind "
                          f"{r['kind']} t {format_time(int(r['t_us']))} late {r['late']}",
                          flush=True)
        horizon = covers[site].live.horizon
        on_time = [replayable(r) for r in stored if r["t_us"] < horizon and not r["late"]]
        (tmp / f"replay-{site}").mkdir(exist_ok=True)
        replayed = replay_lapses(paths[site], on_time, horizon - 1, tmp / f"replay-{site}")
        live = [lapse_record(lp) for lp in covers[site].live.lapses(include_open=True)]
        if live != replayed:
            problems.append(f"{site}: the owner's lapses differ from a replay "
                            f"({len(live)} against {len(replayed)})")
        alerted = {(lp["post"], lp["rule"], lp["start"]) for lp in replayed if lp["alert_at"]}
        # Alerts the owner raised after that checkpoint (its engine went on) are past the
        # replay's horizon: compared up to it.
        alerts = [a for a in svc.load_alerts() if a["kind"] == "lapse"
                  and a["alert_at"] < horizon]
        got = {(a["post"], a["rule"], format_time(a["lapse_start"])) for a in alerts}
        if got != alerted:
            problems.append(f"{site}: alerts {sorted(got)} != replay's {sorted(alerted)}")
        raised = Counter(e.subject for e in svc.audit_entries(limit=1_000_000)
                         if e.action == "alert.raised")
        doubled_alerts = [s for s, n in raised.items() if n > 1]
        if doubled_alerts:
            problems.append(f"{site}: alerts raised more than once: {doubled_alerts}")
        print(f"  {site}: {len(history.acked[site])} acknowledged, {len(stored)} stored "
              f"({sum(1 for r in stored if r['late'])} late), {len(published)} in the stream, "
              f"{len(alerts)} alert(s), replay {len(alerted)}, fence epoch "
              f"{fences.get(key)}", flush=True)
    print(f"  owners' writes checked against the fence: {len(fenced)} "
          f"({len(stale)} stale); writes refused by the fence (logged): {refused}", flush=True)
    return problems


def partitions_unavailable() -> str | None:
    """Why cuts cannot be made here (None: they can); under CI=true that is an error."""
    reason = namespaces_unavailable()
    if reason and os.environ.get("CI") == "true":
        # CI runs as root on the same kind of machine, with iproute2: it can make them.
        raise RuntimeError(f"network namespaces cannot be made: {reason}")
    return reason


def run(seconds: float, seed: int, keep: Path | None = None, *,
        partitions: bool = True) -> bool:
    """Run the campaign; True if every property held. ``partitions``: cut nodes off too,
    where network namespaces can be made."""
    rng = random.Random(seed)
    tmp = keep or Path(tempfile.mkdtemp(prefix="cw-faults-"))
    tmp.mkdir(parents=True, exist_ok=True)
    paths = write_sites(tmp)
    names = unique_names()
    network: Network | None = None
    why = partitions_unavailable() if partitions else "not asked for"
    if why is None:
        network = Network()
    nats = NatsCluster(tmp / "nats")
    if network is not None:
        network.host_nats(nats)
    nats.start()
    history = Campaign(seed)
    cluster: Cluster | None = None
    print(f"fault campaign: seed {seed}, {seconds:.0f} s, 3 NATS nodes (R{REPLICAS}), "
          f"2 gateways, 2 workers, {len(SITES)} sites; files in {tmp}", flush=True)
    print("  cuts: " + ("nats3, gateway2 and worker2 each in a network namespace"
                        if network else f"none ({why})"), flush=True)
    try:
        asyncio.run(nats.ready())
        with postgres_schema(tmp / "data") as db:
            store = open_store(db, tmp / "data")
            _, token = store.create_api_token("feeder", ["ingest"])
            with store.engine.begin() as conn:
                conn.exec_driver_sql(FENCE_AUDIT)
            cluster = Cluster(tmp, db, names, nats, paths, network)
            cluster.start()
            history.started = time.monotonic()
            stop = threading.Event()
            threads = [
                threading.Thread(target=_send, args=(cluster, token, history,
                                                      random.Random(seed + 1), stop)),
                threading.Thread(target=_nemesis, args=(cluster, history, rng, stop))]
            for t in threads:
                t.start()
            time.sleep(seconds)
            stop.set()
            for t in threads:
                t.join(300)
            cluster.heal()
            end_us = time.time_ns() // 1000
            load = os.getloadavg()
            kinds = Counter(f"{f} {n.rstrip('0123456789')}" for _, f, n, _ in history.faults)
            print(f"history: {history.sent} events sent, "
                  f"{sum(len(a) for a in history.acked.values())} acknowledged, "
                  f"{history.failed_requests} failed requests re-sent, "
                  f"{len(history.faults)} faults {dict(kinds)}; "
                  f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)
            try:
                problems = check(history, cluster, store, names, paths, tmp, end_us)
            finally:
                cluster.stop()  # before the schema is dropped
                store.close()
        verdict = not problems
        print("verdict: " + ("VALID" if verdict else "INVALID"), flush=True)
        for p in problems:
            print(f"  - {p}", flush=True)
        return verdict
    finally:
        if cluster is not None:
            cluster.stop()
        else:
            nats.stop()
        if network is not None:
            network.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="directory for logs and stores")
    ap.add_argument("--no-partitions", action="store_true",
                    help="no cuts (kills and pauses only)")
    args = ap.parse_args(argv)
    return 0 if run(args.minutes * 60, args.seed, args.keep,
                    partitions=not args.no_partitions) else 1


if __name__ == "__main__":
    sys.exit(main())
