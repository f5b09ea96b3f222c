"""Stress benchmark: does an SOS get through while the server is under pressure? (issue 19)

Starts a real `coverwatch serve` (SQLite, like bench/ingest.py) on a fictional site of
60 posts, 300 officers reporting at 1 Hz (one batch-API request per fix, async httpx,
each from the officer's own device token), a local webhook receiver (Apprise json://)
as every escalation target, and then, phase by phase:

  calm     nothing else;
  lapse    20 posts lapse at once (their 100 officers walk away together);
  logins   400 wrong logins from 40 addresses (X-Forwarded-For from a trusted proxy);
  bogus    three 16 MiB bodies with a bogus token, at once, every few seconds;
  all      the three together.

In every phase an SOS is sent about once a second (OsmAnd, from a fresh officer each
time); measured: the SOS's answer time, the time until its first notification reaches
the receiver (p50/p99), the median device upload time, and the server's RSS (max).
The table is printed with the machine's load average beside it. Traffic stays on
127.0.0.1; the run takes about two minutes.

    .venv/bin/python bench/stress.py                 # every phase, 20 s each
    .venv/bin/python bench/stress.py --seconds 10 --only calm,bogus --officers 100
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/stress.py   # another version

Target (issue 19): SOS answered and first notification delivered within 2 s at p99 in
every phase, uploads median under 1 s, RSS within 100 MB of calm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchkit import cpu_s, free_port, wait_ready

from coverwatch.domain.time import format_time
from coverwatch.storage import open_store

__all__ = ["main"]

SCRIPT = Path(sys.executable).parent / "coverwatch"
OFFICERS, POSTS, LAPSING, PROBES = 300, 60, 20, 400
PHASES = ("calm", "lapse", "logins", "bogus", "all")



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


class Receiver:
    """A minimal HTTP receiver on 127.0.0.1: notes when each notification title arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.count = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                now = time.monotonic()
                self.count += 1
                with contextlib.suppress(Exception):
                    title = str(orjson.loads(body).get("title", ""))
                    self.arrived.setdefault(title, now)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        writer.close()

    async def start(self) -> asyncio.Server:
        return await asyncio.start_server(self.handle, "127.0.0.1", self.port)


@dataclass
class Phase:
    name: str
    sos_answer: list[float] = field(default_factory=list)
    sos_notified: list[float] = field(default_factory=list)
    sos_missing: int = 0
    uploads: list[float] = field(default_factory=list)
    upload_errors: int = 0
    rss_max: float = 0.0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def server(work: Path, hook: str) -> Iterator[tuple[subprocess.Popen[bytes], str, list[str],
                                                    list[str]]]:
    site = work / "site.yaml"
    site.write_text(site_yaml(hook))
    data = work / "data"
    store = open_store(None, data)
    try:
        officers = [store.create_device(f"phone-{i}", f"O{i}")[1] for i in range(OFFICERS)]
        probes = [store.create_device(f"probe-{i}", f"P{i}")[1] for i in range(PROBES)]
        store.create_user("bench", "bench-password-123", ["supervisor"])
    finally:
        store.close()
    port = free_port()
    cmd = [str(SCRIPT), "serve", "--site", str(site), "--data-dir", str(data), "--port",
           str(port), "--lateness-s", "2", "--trusted-proxies", "127.0.0.1"]
    log = (work / "server.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, work / "server.log")
        yield proc, url, officers, probes
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Load:
    """300 officers at 1 Hz, SOS probes, and the pressure of each phase."""

    def __init__(self, url: str, officers: list[str], probes: list[str], rx: Receiver,
                 pid: int) -> None:
        self.url, self.officers, self.probes, self.rx, self.pid = url, officers, probes, rx, pid
        self.away: set[int] = set()
        self.next_probe = 0
        self.client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(
            max_connections=400, max_keepalive_connections=400))
        self.phase = Phase("setup")

    def _fix(self, i: int) -> list[dict[str, Any]]:
        post = i % POSTS
        x, y = _post_at(post)
        if post in self.away:
            x += 1000.0  # walked away: their post lapses
        return [{"t": format_time(time.time_ns() // 1000), "kind": "fix", "x": x + (i % 5),
                 "y": y, "accuracy_m": 5.0}]

    async def officer(self, i: int, stop: float) -> None:
        headers = {"Authorization": f"Bearer {self.officers[i]}"}
        await asyncio.sleep((i % 100) / 100)
        while time.monotonic() < stop:
            began = time.monotonic()
            try:
                r = await self.client.post(f"{self.url}/api/v1/events", json=self._fix(i),
                                           headers=headers)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            self.phase.uploads.append(time.monotonic() - began)
            self.phase.upload_errors += not ok
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))

    async def duty(self) -> None:
        async def one(token: str) -> None:
            await self.client.post(f"{self.url}/api/v1/events", headers={
                "Authorization": f"Bearer {token}"}, json=[
                {"t": format_time(time.time_ns() // 1000), "kind": "duty", "on": True}])
        for k in range(0, OFFICERS, 50):
            await asyncio.gather(*(one(t) for t in self.officers[k:k + 50]))

    async def sos(self, stop: float) -> None:
        pending: list[asyncio.Task[None]] = []
        while time.monotonic() < stop - 2.5:
            pending.append(asyncio.create_task(self._one_sos(self.phase)))
            await asyncio.sleep(1.0)
        await asyncio.gather(*pending)

    async def _one_sos(self, phase: Phase) -> None:
        n = self.next_probe
        self.next_probe += 1
        title = f"SOS from officer P{n}"
        began = time.monotonic()
        params = {"id": self.probes[n], "alarm": "sos", "valid": "false",
                  "timestamp": str(int(time.time()))}
        try:
            r = await self.client.get(f"{self.url}/osmand", params=params)
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        phase.sos_answer.append(time.monotonic() - began if ok else float("inf"))
        deadline = began + 30
        while title not in self.rx.arrived and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if title in self.rx.arrived:
            phase.sos_notified.append(self.rx.arrived[title] - began)
        else:
            phase.sos_missing += 1
            phase.sos_notified.append(float("inf"))

    async def logins(self, stop: float, total: int = 400) -> None:
        interval = (stop - time.monotonic() - 3) / total
        codes: dict[int, int] = {}

        async def one(k: int) -> None:
            try:
                r = await self.client.post(f"{self.url}/api/v1/login", json={
                    "username": f"user{k % 10}", "password": f"wrong-{k}"},
                    headers={"X-Forwarded-For": f"10.9.{k % 40}.1"})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
            except httpx.HTTPError:
                codes[0] = codes.get(0, 0) + 1
        tasks = []
        for k in range(total):
            tasks.append(asyncio.create_task(one(k)))
            await asyncio.sleep(interval)
        await asyncio.gather(*tasks)
        self.phase.extra["logins"] = codes

    async def bogus(self, stop: float) -> None:
        body = b"[" + b"{}," * (16 * 1024 * 1024 // 3 - 1) + b"{}]"
        codes: dict[int, int] = {}

        async def one() -> None:
            try:
                r = await self.client.post(f"{self.url}/api/v1/devices", content=body, headers={
                    "Authorization": "Bearer cwt_bogus", "Content-Type": "application/json"})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
            except httpx.HTTPError as e:
                key = type(e).__name__
                codes[key] = codes.get(key, 0) + 1  # type: ignore[index]
        while time.monotonic() < stop - 5:
            await asyncio.gather(one(), one(), one())
            await asyncio.sleep(4)
        self.phase.extra["bogus"] = codes

    async def lapse(self) -> None:
        self.away = set(range(LAPSING))

    async def rss(self, stop: float) -> None:
        while time.monotonic() < stop:
            self.phase.rss_max = max(self.phase.rss_max, _rss_mb(self.pid))
            await asyncio.sleep(0.2)

    async def run_phase(self, name: str, seconds: float) -> Phase:
        self.phase = phase = Phase(name)
        self.away = set()
        stop = time.monotonic() + seconds
        jobs = [self.sos(stop), self.rss(stop),
                *(self.officer(i, stop) for i in range(OFFICERS))]
        if name in ("lapse", "all"):
            jobs.append(self.lapse())
        if name in ("logins", "all"):
            jobs.append(self.logins(stop))
        if name in ("bogus", "all"):
            jobs.append(self.bogus(stop))
        began, own, server = time.monotonic(), time.process_time(), cpu_s(self.pid)
        await asyncio.gather(*jobs)
        phase.load = os.getloadavg()
        # Is the load generator itself the limit? Its CPU and the server's, % of a core.
        wall = time.monotonic() - began
        phase.extra["cpu% gen/server"] = (round(100 * (time.process_time() - own) / wall),
                                          round(100 * (cpu_s(self.pid) - server) / wall))
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
            f"{statistics.median(p.uploads) if p.uploads else float('nan'):8.3f} "
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
    rx = Receiver()
    listener = await rx.start()
    hook = f"json://127.0.0.1:{rx.port}/hook"
    with tempfile.TemporaryDirectory(prefix="cw-stress-") as tmp, \
            server(Path(tmp), hook) as (proc, url, officers, probes):
        load = Load(url, officers, probes, rx, proc.pid)
        await load.duty()
        # Warm up: every officer reports (covers every post) before measuring.
        await load.run_phase("warm-up", 8)
        out = []
        for name in phases:
            out.append(await load.run_phase(name, seconds))
            # Each row as soon as its phase ends: a version that hangs still shows the rest.
            print(row(out[-1], out[0].rss_max), f"(receiver: {rx.count} notifications)",
                  file=sys.stderr, flush=True)
            await asyncio.sleep(3)  # let the previous phase's lapses resolve
        await load.client.aclose()
    listener.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--only", default=",".join(PHASES), help="phases, comma-separated")
    parser.add_argument("--officers", type=int, default=OFFICERS,
                        help="officers reporting at 1 Hz (fewer on a machine too busy for 300)")
    args = parser.parse_args()
    globals()["OFFICERS"] = args.officers
    wanted = [p for p in args.only.split(",") if p in PHASES]
    print(f"load before: {os.getloadavg()}", file=sys.stderr)
    report(asyncio.run(run(wanted, args.seconds)))


if __name__ == "__main__":
    main()
