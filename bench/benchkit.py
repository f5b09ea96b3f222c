"""What the HTTP benchmarks share: a free port, a process's CPU seconds, the load average,
starting a `coverwatch serve` and waiting for it to answer, and running `wrk` with a Lua
script that prints its summary as one JSON line (bench/ingest.py, phones.py, stress.py)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["LUA_CLOCK", "LUA_SUMMARY", "cpu_s", "free_port", "loadavg", "parse_wrk", "serve",
           "wait_ready"]

# LuaJIT's ffi clock for wrk scripts (Lua's own os.time() counts whole seconds).
LUA_CLOCK = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } cw_timeval;
int gettimeofday(cw_timeval *tv, void *tz);
]]
local cw_tv = ffi.new("cw_timeval")
local function now_us()
  ffi.C.gettimeofday(cw_tv, nil)
  return tonumber(cw_tv.tv_sec) * 1000000 + tonumber(cw_tv.tv_usec)
end
"""

# wrk's threads (setup) and a done() that prints the latency summary and the sum over the
# threads of each counter named in the script's global COUNTERS, as one line for parse_wrk.
LUA_SUMMARY = r"""
local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local extra = ""
  for _, name in ipairs(COUNTERS) do
    local total = 0
    for _, th in ipairs(threads) do total = total + th:get(name) end
    extra = extra .. string.format(', "%s": %d', name, total)
  end
  io.write(string.format(
    'CWJSON {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p90_ms": %.3f, ' ..
    '"p99_ms": %.3f, "max_ms": %.3f, "socket_errors": %d%s}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, extra))
end
"""


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


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 60,
               path: str = "/healthz") -> None:
    """Wait until the server answers ``path``; raise with its log's tail if it exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready within {timeout_s:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def serve(cmd: list[str], work: Path, env: dict[str, str] | None = None,
          ready: str = "/healthz") -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run ``cmd`` (a `coverwatch serve` with ``--port`` after which the port follows),
    logging to ``work/server.log``; yields the process and its URL once it answers
    ``ready``, and stops it afterwards."""
    port = cmd[cmd.index("--port") + 1]
    log = (work / "server.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, work / "server.log", path=ready)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def parse_wrk(out: str) -> dict[str, float]:
    """The summary a script's ``done()`` printed as ``CWJSON {...}``."""
    line = next((ln for ln in out.splitlines() if ln.startswith("CWJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    result: dict[str, float] = json.loads(line.removeprefix("CWJSON "))
    return result
