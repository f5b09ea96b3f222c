"""Stress benchmark: does an SOS get through while the server is under pressure? (issue 19)

Starts a real `coverwatch serve` (SQLite, like bench/ingest.py) on a fictional site of
60 posts and a local webhook receiver (Apprise json://) as every escalation target, and
drives it from three kinds of process, so that the load generator is never the limit:

  officers  300 officers at 1 Hz, one batch-API request per fix, each from the officer's
            own device token: `wrk` (compiled) with a Lua script (one connection per
            officer, paced to 300 fixes/s over the run; one that falls more than a second
            behind sends its newest fix, not the missed ones);
  SOS       bench/sosprobe.py, a process that does nothing else: an SOS about once a
            second (OsmAnd, a fresh officer each time, a new connection each) and the
            receiver that notes when each notification arrives;
  pressure  this process: the RSS sampler, and the phase's own load:

  calm     nothing else;
  lapse    20 posts lapse at once (their 100 officers walk away together);
  logins   wrong logins at 400 a minute (the issue's "400 in a minute"; a 15 s phase sends
           100): 40 addresses (X-Forwarded-For from a trusted proxy) at the per-address
           limit of 10 a minute, each attempt a new username/address pair, so every one
           passes the login limiter and costs an argon2 check (or a 429 from its queue);
  bogus    three 16 MiB bodies with a bogus token, at once, every few seconds;
  all      the three together.

Measured per phase: the SOS's answer time, the time until its first notification reaches
the receiver (p50/p99), the median device upload time (wrk's), upload errors, the server's
RSS (max), the load average, and the CPU of each process in % of a core (wrk, SOS probe,
this process, server). A run of five 15 s phases takes about two and a half minutes.

    .venv/bin/python bench/stress.py --seconds 15    # every phase (default 20 s each)
    .venv/bin/python bench/stress.py --seconds 10 --only calm,bogus --officers 100
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/stress.py   # another version

Target (issue 19): SOS answered and first notification delivered within 2 s at p99 in
every phase, uploads median under 1 s, RSS within 100 MB of calm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchkit import LUA_CLOCK, LUA_SUMMARY, cpu_s, free_port, parse_wrk, serve

from coverwatch.domain.time import format_time
from coverwatch.storage import open_store

__all__ = ["main"]

SCRIPT = Path(sys.executable).parent / "coverwatch"
PROBE = Path(__file__).with_name("sosprobe.py")
OFFICERS, POSTS, LAPSING, WARM_UP_S = 300, 60, 20, 8.0
LOGINS_PER_MINUTE, LOGIN_ADDRESSES = 400, 40
PHASES = ("calm", "lapse", "logins", "bogus", "all")

# Officers: wrk gives request k of a thread officer `index + k * threads`; post i % 60.
OFFICERS_LUA = LUA_CLOCK + LUA_SUMMARY + r"""
COUNTERS = {"ok", "bad"}

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  stride = tonumber(args[2])
  lapsing = tonumber(args[3])
  posts = tonumber(args[4])
  interval = 1e6 * stride / #tokens  -- us between this thread's fixes: each officer at 1 Hz
  n = index - stride
  due = now_us()
  ok, bad = 0, 0
end

function delay()
  -- Paced over the whole thread, not per connection; more than a second behind, a phone
  -- sends its newest fix rather than every missed one.
  local now = now_us()
  due = math.max(due + interval, now - 1e6)
  return math.max(0, math.floor((due - now) / 1000))
end

function request()
  n = n + stride
  local i = n % #tokens
  local post = i % posts
  local x = (post % 10) * 300 + (i % 5)
  if post < lapsing then x = x + 1000 end  -- walked away: the post lapses
  local y = math.floor(post / 10) * 300
  local us = now_us()
  local t = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(us / 1e6)) ..
    string.format(".%06dZ", us % 1e6)
  return wrk.format("POST", "/api/v1/events",
    {["Authorization"] = "Bearer " .. tokens[i + 1], ["Content-Type"] = "application/json"},
    string.format('[{"t":"%s","kind":"fix","x":%.1f,"y":%.1f,"accuracy_m":5.0}]', t, x, y))
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end
"""


def _post_at(i: int) -> tuple[float, float]:
    return (i % 10) * 300.0, (i // 10) * 300.0


def site_yaml(hook: str) -> str:
    lines = ["site: stress-depot", "name: Stress Depot (fictional)", "timezone: UTC",
             "stale_after_s: 30", "escalation:", "  default:", "    - after_s: 0",
             f"      notify: ['{hook}']", "posts:"]
    for i in range(POSTS):
        x, y = _post_at(i)
        lines += [f"  - id: post-{i}", f"    at: [{x}, {y}]", "    rules:",
                  "      - {id: cover, need: 1, within_m: 40, grace_s: 0}"]
    return "\n".join(lines) + "\n"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children_cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


@dataclass
class Phase:
    name: str
    sos_answer: list[float] = field(default_factory=list)
    sos_notified: list[float] = field(default_factory=list)
    sos_missing: int = 0
    upload_median: float = float("nan")
    upload_errors: int = 0
    rss_max: float = 0.0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)


def enrol(work: Path, hook: str, probes_needed: int) -> tuple[Path, Path]:
    """A fresh store with the site's officers and probe devices; their token files."""
    (work / "site.yaml").write_text(site_yaml(hook))
    store = open_store(None, work / "data")
    try:
        officers = [store.create_device(f"phone-{i}", f"O{i}")[1] for i in range(OFFICERS)]
        probes = [store.create_device(f"probe-{i}", f"P{i}")[1] for i in range(probes_needed)]
    finally:
        store.close()
    (work / "officers.txt").write_text("\n".join(officers) + "\n")
    (work / "probes.txt").write_text("\n".join(probes) + "\n")
    return work / "officers.txt", work / "probes.txt"


def server(work: Path) -> contextlib.AbstractContextManager[tuple[subprocess.Popen[bytes], str]]:
    cmd = [str(SCRIPT), "serve", "--site", str(work / "site.yaml"), "--data-dir",
           str(work / "data"), "--port", str(free_port()), "--lateness-s", "2",
           "--trusted-proxies", "127.0.0.1"]
    return serve(cmd, work)


class Prober:
    """bench/sosprobe.py in its own process: the SOS probe and the notification receiver."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, port: int, probes: Path) -> Prober:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PROBE), str(port), str(probes),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        await proc.stdout.readline()  # {"ready": true}: listening
        return cls(proc)

    async def phase(self, url: str, seconds: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(orjson.dumps({"url": url, "seconds": seconds}) + b"\n")
        await self.proc.stdin.drain()
        result: dict[str, Any] = orjson.loads(await self.proc.stdout.readline())
        return result

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class Load:
    """Officers (wrk), the SOS probe (its own process) and the pressure of each phase."""

    def __init__(self, url: str, work: Path, officers: Path, prober: Prober, pid: int) -> None:
        self.url, self.officers, self.prober, self.pid = url, officers, prober, pid
        self.script = work / "officers.lua"
        self.script.write_text(OFFICERS_LUA)
        self.client = httpx.AsyncClient(timeout=60)
        self.logins_sent = 0
        self.phase = Phase("setup")

    async def duty(self) -> None:
        async def one(token: str) -> None:
            await self.client.post(f"{self.url}/api/v1/events", headers={
                "Authorization": f"Bearer {token}"}, json=[
                {"t": format_time(time.time_ns() // 1000), "kind": "duty", "on": True}])
        tokens = self.officers.read_text().split()
        for k in range(0, len(tokens), 50):
            await asyncio.gather(*(one(t) for t in tokens[k:k + 50]))

    async def fixes(self, seconds: float, lapsing: int) -> float:
        """The officers' fixes for ``seconds`` (wrk); returns wrk's CPU seconds."""
        cmd = ["wrk", "-t", "1", "-c", str(OFFICERS), "-d", f"{max(1, round(seconds))}s",
               "--timeout", "30s", "-s", str(self.script), self.url, "--",
               str(self.officers), "1", str(lapsing), str(POSTS)]
        before = _children_cpu_s()
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        cpu = _children_cpu_s() - before
        r = parse_wrk(out.decode())
        self.phase.upload_median = r["p50_ms"] / 1000
        self.phase.upload_errors = int(r["bad"] + r["socket_errors"])
        self.phase.extra["fixes/s"] = round(r["requests"] / max(r["seconds"], 1e-9))
        return cpu

    async def logins(self, seconds: float) -> None:
        """Wrong logins at LOGINS_PER_MINUTE, each address at its limit of 10 a minute and
        each attempt a new username/address pair (the pair's back-off never starts)."""
        codes: dict[int, int] = {}

        async def one(k: int) -> None:
            try:
                r = await self.client.post(f"{self.url}/api/v1/login", json={
                    "username": f"user{k // LOGIN_ADDRESSES % 10}", "password": f"wrong-{k}"},
                    headers={"X-Forwarded-For": f"10.9.{k % LOGIN_ADDRESSES}.1"})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
            except httpx.HTTPError:
                codes[0] = codes.get(0, 0) + 1
        began = time.monotonic()
        tasks = []
        for j in range(int(seconds * LOGINS_PER_MINUTE / 60)):
            await asyncio.sleep(max(0.0, began + j * 60 / LOGINS_PER_MINUTE - time.monotonic()))
            tasks.append(asyncio.create_task(one(self.logins_sent)))
            self.logins_sent += 1
        await asyncio.gather(*tasks)
        self.phase.extra["logins"] = codes

    async def bogus(self, stop: float) -> None:
        body = b"[" + b"{}," * (16 * 1024 * 1024 // 3 - 1) + b"{}]"
        codes: dict[int | str, int] = {}

        async def one() -> None:
            try:
                r = await self.client.post(f"{self.url}/api/v1/devices", content=body, headers={
                    "Authorization": "Bearer cwt_bogus", "Content-Type": "application/json"})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
            except httpx.HTTPError as e:
                codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
        while time.monotonic() < stop - 5:
            await asyncio.gather(one(), one(), one())
            await asyncio.sleep(4)
        self.phase.extra["bogus"] = codes

    async def rss(self, stop: float) -> None:
        while time.monotonic() < stop:
            self.phase.rss_max = max(self.phase.rss_max, _rss_mb(self.pid))
            await asyncio.sleep(0.2)

    async def run_phase(self, name: str, seconds: float) -> Phase:
        self.phase = phase = Phase(name)
        stop = time.monotonic() + seconds
        sos = asyncio.create_task(self.prober.phase(self.url, seconds))
        pressure = [self.rss(stop)]
        if name in ("logins", "all"):
            pressure.append(self.logins(seconds))
        if name in ("bogus", "all"):
            pressure.append(self.bogus(stop))
        began, own, server = time.monotonic(), time.process_time(), cpu_s(self.pid)
        probe = cpu_s(self.prober.proc.pid)
        wrk_cpu, *_ = await asyncio.gather(
            self.fixes(seconds, LAPSING if name in ("lapse", "all") else 0), *pressure)
        # CPU while the load ran, % of a core: is any generator the limit?
        wall = time.monotonic() - began
        cpu = (wrk_cpu, cpu_s(self.prober.proc.pid) - probe, time.process_time() - own,
               cpu_s(self.pid) - server)
        phase.extra["cpu% wrk/probe/main/server"] = tuple(round(100 * c / wall) for c in cpu)
        phase.load = os.getloadavg()
        got = await sos  # its last SOS's notification may come after the phase
        phase.sos_answer = [float("inf") if a is None else a for a in got["answer"]]
        phase.sos_notified = [float("inf") if a is None else a for a in got["notified"]]
        phase.sos_missing = got["lost"]
        phase.extra["received"] = got["received"]
        return phase


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _s(v: float) -> str:
    return "  lost" if v == float("inf") else f"{v:6.2f}"


HEADER = (f"{'phase':<8} {'SOS answer s':>15} {'first notice s':>15} {'upload':>8} "
          f"{'errors':>7} {'RSS MB':>7} {'+calm':>6}  load 1/5/15 min   other\n"
          f"{'':<8} {'p50':>7} {'p99':>7} {'p50':>7} {'p99':>7} {'median':>8}")


def row(p: Phase, calm: float) -> str:
    return (f"{p.name:<8} {_s(_pct(p.sos_answer, 50)):>7} {_s(_pct(p.sos_answer, 99)):>7} "
            f"{_s(_pct(p.sos_notified, 50)):>7} {_s(_pct(p.sos_notified, 99)):>7} "
            f"{p.upload_median:8.3f} "
            f"{p.upload_errors:7d} {p.rss_max:7.0f} {p.rss_max - calm:+6.0f}  "
            f"{p.load[0]:.2f} {p.load[1]:.2f} {p.load[2]:.2f}    "
            f"SOS n={len(p.sos_answer)} lost={p.sos_missing} {p.extra or ''}")


def report(phases: list[Phase]) -> None:
    calm = next((p.rss_max for p in phases if p.name == "calm"), phases[0].rss_max)
    print("\n" + HEADER)
    for p in phases:
        print(row(p, calm))
    print("\ntarget: SOS answer and first notice p99 <= 2 s; upload median < 1 s; "
          "RSS within +100 MB of calm")


async def run(phases: list[str], seconds: float) -> list[Phase]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cw-stress-") as tmp:
        work = Path(tmp)
        # An SOS a second in each phase and the warm-up (each from a fresh probe device).
        need = math.ceil(WARM_UP_S + seconds * len(phases)) + 10
        officers, probes = enrol(work, f"json://127.0.0.1:{port}/hook", need)
        prober = await Prober.start(port, probes)  # the receiver listens before any alert
        try:
            with server(work) as (proc, url):
                load = Load(url, work, officers, prober, proc.pid)
                try:
                    await load.duty()
                    # Warm up: every officer reports (covers every post) before measuring.
                    await load.run_phase("warm-up", WARM_UP_S)
                    out = []
                    for name in phases:
                        out.append(await load.run_phase(name, seconds))
                        # Each row as soon as its phase ends: a version that hangs still
                        # shows the rest.
                        print(row(out[-1], out[0].rss_max), file=sys.stderr, flush=True)
                        await asyncio.sleep(3)  # let the previous phase's lapses resolve
                finally:
                    await load.client.aclose()
        finally:
            await prober.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--only", default=",".join(PHASES), help="phases, comma-separated")
    parser.add_argument("--officers", type=int, default=OFFICERS,
                        help="officers reporting at 1 Hz (fewer on a machine too busy for 300)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/stress.py needs wrk for the officers' load (apt-get install -y wrk)")
    globals()["OFFICERS"] = args.officers
    wanted = [p for p in args.only.split(",") if p in PHASES]
    print(f"load before: {os.getloadavg()}", file=sys.stderr)
    report(asyncio.run(run(wanted, args.seconds)))


if __name__ == "__main__":
    main()
