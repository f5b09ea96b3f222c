"""Distributed mode, operations: stopping nodes and the cluster runner.

1. SIGTERM to the worker owning the site, with a control room's live feed open: it
   exits (within seconds; printed; it used to wait for the stream to end),
   having released its lease, and the other worker owns the site without waiting
   for the lease to expire.
2. SIGTERM or SIGINT to the cluster runner (``python -m coverwatch.cli.cluster``, what
   ``make cluster`` runs): every server it started (each in a session of its own)
   is stopped too.
3. ``/metrics`` and the board (``/api/v1/sites``) name each site's owner and its lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from clusterkit import POSTGRES_URL, ServeProcess, postgres_schema
from natskit import NATS_URL, cleanup, free_port, need_nats, unique_names, wait_for
from sqlalchemy.engine import make_url
from test_bus_outbox import _owner

from coverwatch.bus import BusNames
from coverwatch.storage import open_store
from serverkit import PASSWORD, WallClock, base_settings, running_server, wait_until, write_site

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is stopped too.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _open_feed(server: ServeProcess, db: str, data: Path) -> None:
    store = open_store(db, data)
    try:
        user = store.create_user("sam", PASSWORD, ["supervisor"])
        session = store.create_session(user.id, now_us=time.time_ns() // 1000,
                                       ttl_us=3600 * 1_000_000)
    finally:
        store.close()
    connected = threading.Event()

    def listen() -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.stream(
                "GET", server.url + "/api/v1/feed", timeout=300,
                headers={"Cookie": f"cw_session={session.token}"}) as r:
            assert r.status_code == 200
            for _ in r.iter_bytes():
                connected.set()

    threading.Thread(target=listen, daemon=True).start()
    assert connected.wait(60)


def test_sigterm_hands_the_site_over_at_once(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site_path = write_site(tmp_path)
    data = tmp_path / "data"
    procs: list[ServeProcess] = []
    try:
        with postgres_schema(data) as db:
            site = "test-quay"
            owner = ServeProcess(site_path, data, db, names, "worker",
                                 tmp_path / "owner.log").start()
            procs.append(owner)
            assert asyncio.run(wait_for(lambda: _owner(NATS_URL, names, site), 30))
            first = asyncio.run(_owner(NATS_URL, names, site))
            procs.append(ServeProcess(site_path, data, db, names, "worker",
                                      tmp_path / "other.log").start())
            time.sleep(3)  # the other is up and sees the site taken
            assert asyncio.run(_owner(NATS_URL, names, site)) == first
            assert owner.proc is not None
            _open_feed(owner, db, data)  # a control room's live feed keeps streaming
            start = time.monotonic()
            owner.proc.send_signal(signal.SIGTERM)
            owner.proc.wait(60)
            stopped = time.monotonic() - start
            # Released before it exited, not left to expire.
            assert asyncio.run(_owner(NATS_URL, names, site)) != first

            async def moved() -> bool:
                now = await _owner(NATS_URL, names, site)
                return now is not None and now != first

            assert asyncio.run(wait_for(moved, 30, step=0.05))
            taken = time.monotonic() - start
            print(f"SIGTERM: stopped after {stopped:.2f} s, site owned again after "
                  f"{taken:.2f} s")
    finally:
        for p in procs:
            p.stop()
        asyncio.run(cleanup(NATS_URL, names))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_to_the_cluster_runner_stops_every_server(tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    need_nats()
    names = BusNames(unique_names().prefix)
    database = f"cw_cluster_{uuid.uuid4().hex[:10]}"
    admin = make_url(POSTGRES_URL).set(database="postgres").render_as_string(
        hide_password=False)
    with postgres_schema(tmp_path / "unused"):
        pass  # skips cleanly when PostgreSQL is not there
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    runner = subprocess.Popen(
        [sys.executable, "-m", "coverwatch.cli.cluster", "--sites", "1", "--workers", "1",
         "--data-dir", str(tmp_path / "cluster"), "--bus", NATS_URL, "--admin-db", admin,
         "--database", database, "--bus-prefix", names.prefix, "--port", str(free_port())],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids: list[int] = []
    try:
        assert runner.stdout is not None
        deadline = time.monotonic() + 180
        for line in runner.stdout:
            pids += [int(p) for p in re.findall(r"\bpid (\d+)", line)]
            if line.startswith("Simulating") or time.monotonic() > deadline:
                break
        assert len(pids) == 2, pids  # a gateway and a worker
        time.sleep(2)
        runner.send_signal(sig)  # make cluster: Ctrl-C, or a supervisor's SIGTERM
        rest = runner.communicate(timeout=90)[0]
        assert "cluster stopped" in rest, rest
        assert not [pid for pid in pids if _alive(pid)]
    finally:
        if runner.poll() is None:
            runner.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        asyncio.run(cleanup(NATS_URL, names))


def test_metrics_and_the_board_name_each_sites_owner(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site_path = write_site(tmp_path)
    data = tmp_path / "data"
    try:
        with postgres_schema(data) as db:
            settings = base_settings(site_path, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role="worker")
            with running_server(settings, WallClock()) as kit:
                cw = kit.svc.bus.worker
                site = kit.svc.site.id
                assert asyncio.run(wait_for(lambda: cw.owns(site), 30))
                admin, sup = kit.user("ada", "admin"), kit.user("sam", "supervisor")

                def board() -> dict[str, Any]:
                    return dict(kit.request(sup, "GET", "/api/v1/sites").json()["sites"][0])

                wait_until(lambda: board()["owner"] == cw.worker.id, timeout_s=30,
                           what="the board to name the owner")
                text = kit.request(admin, "GET", "/metrics").text
                assert f'coverwatch_site_owner{{here="1",owner="{cw.worker.id}"}} 1.0' in text
                assert "coverwatch_site_owner_lag_seconds " in text
    finally:
        asyncio.run(cleanup(NATS_URL, names))
