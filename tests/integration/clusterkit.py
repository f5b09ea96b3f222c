"""Test kit for the distributed mode: a PostgreSQL schema of the test's own, `coverwatch serve`
processes with ``--bus``, and readers of the site's stream.

Every test gets its own schema (dropped afterwards) and its own bus prefix
(``natskit.unique_names``), so runs never collide on the shared services.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from natskit import NATS_URL, free_port
from services import drop_schema, require_service, service_unavailable
from sqlalchemy.engine import make_url

from coverwatch.bus import BusMessage, BusNames, EventLog, connect
from coverwatch.storage import upgrade

__all__ = [
    "POSTGRES_URL",
    "SITE",
    "SITES",
    "ServeProcess",
    "events_of",
    "postgres_schema",
    "read_subject",
    "replayable",
    "site_args",
    "write_sites",
]

POSTGRES_URL = os.environ.get(
    "COVERWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SRC = Path(__file__).resolve().parents[2] / "src"

# How long a server may take to answer /healthz: generous, because under a loaded machine
# (load average 30+ on 2 cores) start-up has taken well over a minute; a server that
# exits fails at once, so only a hung start waits this long.
START_LIMIT_S = float(os.environ.get("COVERWATCH_TEST_SERVE_START_S", "180"))

# Site id -> (its gate post, its officer): nothing shared, so an alert names its site.
SITES = {"north-dock": ("north-gate", "N1"), "east-yard": ("east-gate", "E1"),
         "west-quay": ("west-gate", "W1")}
SITE = """\
site: {site_id}
name: {site_id} (fictional)
origin: {{lat: 51.5, lon: -0.12}}
stale_after_s: 30
timezone: UTC
flags: {{open-hours: true}}
posts:
  - id: {post}
    at: [0, 0]
    gate: true
    rules:
      - id: cover
        need: 1
        within_m: 25
        grace_s: 10
        when: open-hours
escalation:
  default:
    - after_s: 0
      notify: [supervisor]
"""


def site_args(paths: Iterable[Path]) -> list[str]:
    """``--site P`` for each further site file of a `coverwatch serve`."""
    return [a for p in paths for a in ("--site", str(p))]


def write_sites(tmp: Path) -> dict[str, Path]:
    """:data:`SITES` as site files in ``tmp``; their paths by site id."""
    paths = {}
    for site_id, (post, _) in SITES.items():
        path = tmp / f"{site_id}.yaml"
        path.write_text(SITE.format(site_id=site_id, post=post), encoding="utf-8")
        paths[site_id] = path
    return paths


def replayable(row: dict[str, Any]) -> dict[str, Any]:
    """A stored event as the replay test's event (what test_live_equivalence sends)."""
    e: dict[str, Any] = {"t": int(row["t_us"]), "kind": row["kind"]}
    if row["kind"] == "fix":
        e |= {"officer": row["officer"], "x": row["x"], "y": row["y"],
              "accuracy_m": row["accuracy"]}
    elif row["kind"] == "duty":
        e |= {"officer": row["officer"], "on": bool(row["on"])}
    return e


@contextlib.contextmanager
def postgres_schema(data_dir: Path) -> Iterator[str]:
    """A migrated schema of the test's own; yields its URL (skips or fails without PostgreSQL)."""
    parsed = make_url(POSTGRES_URL)
    require_service("PostgreSQL", parsed.host or "127.0.0.1", parsed.port or 5432)
    try:
        admin = psycopg.connect(
            parsed.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True)
    except psycopg.OperationalError as exc:
        service_unavailable("PostgreSQL", f"cannot connect to {POSTGRES_URL}: {exc}")
    schema = f"cw_bus_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    url = parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    try:
        upgrade(url, data_dir)
        yield url
    finally:
        drop_schema(admin, schema)
        admin.close()


class ServeProcess:
    """`coverwatch serve --bus … --role …` as a child process (this worktree's code)."""

    def __init__(self, site: Path, data_dir: Path, db: str, names: BusNames, role: str,
                 log: Path, *extra: str, bus_url: str = NATS_URL,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-c", "from coverwatch.cli import main; main()", "serve",
                    "--site", str(site), "--data-dir", str(data_dir), "--db", db,
                    "--port", str(self.port), "--bus", bus_url, "--bus-prefix", names.prefix,
                    "--role", role, *extra]
        self.log = log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        env = {**os.environ, **self.env, "PYTHONPATH": os.pathsep.join(
            [str(SRC), os.environ.get("PYTHONPATH", "")])}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {START_LIMIT_S:.0f} s: "
                             f"{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def signal(self, sig: int) -> None:
        """Send ``sig`` (SIGSTOP, SIGCONT…) to the server if it is running."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def read_subject(names: BusNames, site: str, url: str = NATS_URL) -> list[BusMessage]:
    """Every message of the site's subject so far, in stream order."""
    import asyncio

    nc = await connect(url)
    log = EventLog(nc.jetstream(), names)
    last = await log.last_seq(site)
    got: list[BusMessage] = []

    gen = [0]  # the current consumer's: a replaced one's late deliveries are dropped

    def collector(mine: int) -> Callable[[BusMessage], Awaitable[None]]:
        async def collect(m: BusMessage) -> None:
            if gen[0] == mine:
                got.append(m)

        return collect

    try:
        if last:
            sub = await log.follow(site, 0, collector(0))
            deadline = time.monotonic() + 60
            moved, count = time.monotonic(), 0
            while (not got or got[-1].seq < last) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                if len(got) != count:
                    moved, count = time.monotonic(), len(got)
                elif time.monotonic() - moved > 5:
                    # A consumer stalled by a leader's election after a partition: read on
                    # from where it stopped with a new one.
                    await sub.unsubscribe()
                    gen[0] += 1
                    sub = await log.follow(site, got[-1].seq if got else 0, collector(gen[0]))
                    moved = time.monotonic()
            await sub.unsubscribe()
            # A read cut short is not a message lost: say which it was.
            if not got or got[-1].seq < last:
                raise TimeoutError(f"{site}: read the stream up to sequence "
                                   f"{got[-1].seq if got else 0} of {last} in 60 s")
    finally:
        await nc.close()
    return [m for m in got if m.seq <= last]


def events_of(messages: list[BusMessage]) -> list[Any]:
    return [m for m in messages if m.kind == "event"]
