"""What the HTTP benchmarks share: a free port, a process's CPU seconds, the load average,
and waiting for a started `coverwatch serve` to answer (bench/ingest.py, phones.py,
stress.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

__all__ = ["cpu_s", "free_port", "loadavg", "wait_ready"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    """The machine's load averages (1, 5, 15 min), printed beside every figure."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 60) -> None:
    """Wait until the server answers /healthz; raise with its log's tail if it exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready within {timeout_s:.0f} s")
        time.sleep(0.1)
