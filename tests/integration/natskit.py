"""Test kit for the bus: a unique prefix per test on the shared NATS, private servers.

``bus_prefix`` gives each test its own stream and buckets (``cwt-<random>``)
and deletes them afterwards. ``PrivateNats`` starts a ``nats-server -js`` of
the test's own on a free port and data directory, for tests that restart it;
the machine's shared NATS is never restarted. ``NatsCluster`` is three (or more)
of them joined by cluster routes, for replicated streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from services import require_service, service_unavailable

from coverwatch.bus import BusNames, connect

__all__ = [
    "NATS_URL",
    "NatsCluster",
    "PrivateNats",
    "cleanup",
    "free_port",
    "need_nats",
    "spawn_worker",
    "unique_names",
    "wait_for",
]

HERE = Path(__file__).resolve().parent
NATS_URL = os.environ.get("COVERWATCH_TEST_NATS_URL", "nats://127.0.0.1:4222")


def need_nats() -> None:
    host, _, port = NATS_URL.removeprefix("nats://").partition(":")
    require_service("NATS", host, int(port or 4222))


def unique_names() -> BusNames:
    return BusNames(f"cwt-{uuid.uuid4().hex[:10]}")


async def cleanup(url: str, names: BusNames) -> None:
    """Delete the test's stream and buckets (whatever of them exists)."""
    nc = await connect(url)
    js = nc.jetstream()
    for stream in (names.stream, f"KV_{names.leases}", f"KV_{names.checkpoints}"):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
    await nc.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateNats:
    """A nats-server with JetStream of the test's own (port, data directory).

    ``cluster`` (this server's route port, the routes to the others, the cluster's
    name) makes it one member of a :class:`NatsCluster`.
    """

    def __init__(self, data_dir: Path, *, name: str | None = None,
                 cluster: tuple[int, list[int], str] | None = None) -> None:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(exe).exists():
            service_unavailable("nats-server", "the executable is not installed")
        self.exe = exe
        self.port = free_port()
        self.data_dir = data_dir
        self.name = name
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.exe, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
                str(self.data_dir)]
        if self.name is not None:
            args += ["-n", self.name]
        if self.cluster is not None:
            route_port, others, cluster_name = self.cluster
            args += ["--cluster_name", cluster_name,
                     "--cluster", f"nats://127.0.0.1:{route_port}",
                     "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in others)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("private nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def signal(self, sig: int) -> None:
        """Send ``sig`` (SIGKILL, SIGSTOP, SIGCONT…) to the server, if it is running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait(10)


class NatsCluster:
    """``size`` private nats-servers with JetStream joined by cluster routes.

    Each has its own client port, route port and data directory under ``root``;
    :attr:`url` lists every client URL comma-separated (as ``--bus`` takes them).
    """

    def __init__(self, root: Path, size: int = 3) -> None:
        name = f"cwt-{uuid.uuid4().hex[:6]}"
        routes = [free_port() for _ in range(size)]
        self.servers = [
            PrivateNats(root / f"n{i}", name=f"{name}-n{i}",
                        cluster=(routes[i], [p for j, p in enumerate(routes) if j != i], name))
            for i in range(size)]

    @property
    def url(self) -> str:
        return ",".join(s.url for s in self.servers)

    def start(self) -> NatsCluster:
        for s in self.servers:
            s.start()
        return self

    async def ready(self, timeout: float = 90.0) -> None:
        """Wait until the cluster has formed: a stream on every server can be made."""
        from nats.js import api

        nc = await connect(self.url)
        probe = f"cwt-probe-{uuid.uuid4().hex[:6]}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    js = nc.jetstream(timeout=10)
                    await js.add_stream(api.StreamConfig(
                        name=probe, subjects=[f"{probe}.>"], storage=api.StorageType.FILE,
                        num_replicas=len(self.servers)))
                    await js.delete_stream(probe)
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await nc.close()

    def stop(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.signal(signal.SIGCONT)  # a stopped server cannot act on SIGTERM
                s.stop()


async def wait_for(predicate, timeout: float, step: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    """Poll an async or plain predicate until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        await asyncio.sleep(step)
    return False


def spawn_worker(names: BusNames, wid: str, sites: list[str], out: Path,
                 *extra: str) -> subprocess.Popen[str]:
    """Start tests/integration/busworker.py and wait until it is ready."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "busworker.py"), NATS_URL, names.prefix, wid,
         ",".join(sites), str(out), *extra], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc
