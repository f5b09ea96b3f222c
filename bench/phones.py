"""Phones as they send (issue 25): one OsmAnd request per fix, measured with wrk.

Starts a real `coverwatch serve` (SQLite, durable before the 200) on a fictional site with
N devices enrolled, then drives it with `wrk` (a compiled load generator, so the generator
is not the limit) and a Lua script that gives every request its own device token (round
robin over the N devices) and the current time in milliseconds:

  max      closed loop, as fast as the server answers (--connections, default 64);
  paced    one connection per phone, each sending a fix every second (--paced phones,
           default 1 000: 1 000 officers at 1 Hz; several: --paced 1000,2000); latency
           here is what a phone sees. Each phone waits 0.5-1.5 s (1 s on average) after
           each answer, so N phones ask for a little under N requests/s.

Printed per run: requests/s, p50/p99 latency, non-200 answers, the server's CPU per request
(from /proc/<pid>/stat before and after) and wrk's (its rusage), late events (the server's
own counter, from /metrics), and the load average. Every 200 must be durable: after the run
the store must hold at least as many events as the 200s accepted (checked, printed as
"stored").

Trees are run interleaved (round 1: A, B; round 2: A, B; ...) and the ratios to the first
tree printed, so a busy machine affects each alike:

    .venv/bin/python bench/phones.py                                  # this tree
    .venv/bin/python bench/phones.py --tree before=/work/base/src --tree after=src --rounds 2

Skipped with a message (exit 0) when wrk is not installed (`apt-get install -y wrk`).
Traffic stays on 127.0.0.1. Target (issue 25): >= 2 000 requests/s, p99 < 100 ms, nothing late.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from benchkit import LUA_CLOCK, LUA_SUMMARY, cpu_s, free_port, loadavg, parse_wrk, serve

__all__ = ["main"]

SCRIPT = Path(sys.executable).parent / "coverwatch"
POSTS = 20

LUA = LUA_CLOCK + LUA_SUMMARY + r"""
COUNTERS = {"ok", "bad", "late", "accepted"}

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  pause = tonumber(args[2])
  step = tonumber(args[3])
  limit = tonumber(args[4] or "0")
  n = index
  ok, bad, late, accepted = 0, 0, 0, 0
end

function request()
  n = n + step
  local i = n % #tokens
  local ms = math.floor(now_us() / 1000)
  -- near post i % 20 (placed on a 200 m grid north-east of the origin), a metre of jitter
  local post = i % 20
  local lat = 51.5 + (math.floor(post / 5) * 200 + (n % 7)) / 111200
  local lon = -0.12 + ((post % 5) * 200 + (n % 5)) / 69200
  return wrk.format("GET", string.format(
    "/osmand?id=%s&lat=%.7f&lon=%.7f&timestamp=%d&accuracy=5&batt=81",
    tokens[i + 1], lat, lon, ms))
end

function delay()
  -- spread the phones over the second (else every connection sends at once)
  if pause == 0 then return 0 end
  return math.floor(pause * (0.5 + math.random()))
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    if not string.find(body, '"late":0', 1, true) then late = late + 1 end
    if string.find(body, '"accepted":1', 1, true) then accepted = accepted + 1 end
  else
    bad = bad + 1
  end
  if limit > 0 and ok + bad >= limit then wrk.thread:stop() end
end
"""


def site_yaml() -> str:
    lines = ["site: phones-depot", "name: Phones Depot (fictional)", "timezone: UTC",
             "origin: {lat: 51.5, lon: -0.12}", "stale_after_s: 30",
             "default_accuracy_m: 5", "posts:"]
    for i in range(POSTS):
        x, y = (i % 5) * 200.0, (i // 5) * 200.0
        lines += [f"  - id: post-{i}", f"    at: [{x}, {y}]", "    rules:",
                  "      - {id: cover, need: 1, within_m: 30, grace_s: 60}"]
    return "\n".join(lines) + "\n"





@dataclass
class Run:
    tree: str
    mode: str
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int
    cpu_ms_per_request: float
    late: int
    gen_ms_per_request: float
    stored_ok: bool
    load: str
    raw: dict[str, float] = field(default_factory=dict)


def _env(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src:  # a tree's src, or several paths joined by os.pathsep (e.g. src and uvloop)
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in src.split(os.pathsep))
    return env


@contextlib.contextmanager
def server(work: Path, src: str | None, devices: int) -> Iterator[tuple[int, str, Path, str]]:
    """`coverwatch serve` from the tree ``src`` on a fresh store with ``devices`` phones;
    yields (pid, url, tokens file, auditor token)."""
    site = work / "site.yaml"
    site.write_text(site_yaml())
    data = work / "data"
    env = _env(src)
    # Enrol through the tree's own store (its schema), in a child process.
    enrol = (
        "import sys\nfrom pathlib import Path\nfrom coverwatch.storage import open_store\n"
        "s = open_store(None, Path(sys.argv[1]))\n"
        "toks = [s.create_device(f'phone-{i}', f'O{i}')[1] for i in range(int(sys.argv[2]))]\n"
        "print(s.create_api_token('bench-auditor', ['auditor'])[1])\n"
        "Path(sys.argv[3]).write_text('\\n'.join(toks) + '\\n')\ns.close()\n")
    tokens = work / "tokens.txt"
    auditor = subprocess.run([sys.executable, "-c", enrol, str(data), str(devices), str(tokens)],
                             env=env, check=True, capture_output=True, text=True).stdout.strip()
    cmd = [str(SCRIPT), "serve", "--site", str(site), "--data-dir", str(data), "--port",
           str(free_port()), "--lateness-s", "2"]
    with serve(cmd, work, env) as (proc, url):
        yield proc.pid, url, tokens, auditor


def _late_total(url: str, auditor: str) -> int:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {auditor}"},
                     timeout=30).text
    return int(sum(float(m) for m in re.findall(
        r"^coverwatch_events_late_total(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)))


def _stored(work: Path, src: str | None) -> int:
    code = ("import sys\nfrom pathlib import Path\nfrom coverwatch.storage import open_store\n"
            "s = open_store(None, Path(sys.argv[1]))\nprint(s.count_events())\ns.close()\n")
    out = subprocess.run([sys.executable, "-c", code, str(work / "data")], env=_env(src),
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def wrk(url: str, script: Path, tokens: Path, *, connections: int, threads: int,
        seconds: float, pause_ms: int, limit: int = 0) -> dict[str, float]:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
           "--timeout", "30s", "-s", str(script), url, "--", str(tokens), str(pause_ms),
           str(threads), str(limit)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = parse_wrk(out)
    summary["gen_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return summary


def one_tree(label: str, src: str | None, args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="cw-phones-") as tmp:
        work = Path(tmp)
        script = work / "phones.lua"
        script.write_text(LUA)
        with server(work, src, args.devices) as (pid, url, tokens, auditor):
            # Warm up: every device sends once (imports, caches, each device's first lookup).
            # wrk.thread:stop() ends the sending, but wrk itself always runs its -d seconds.
            wrk(url, script, tokens, connections=16, threads=1, seconds=10, pause_ms=0,
                limit=args.devices)
            modes = [("max", args.connections, 0)]
            modes += [(f"paced {n}/s", n, 1000) for n in args.paced]
            for mode, conns, pause in modes:
                late0, cpu0 = _late_total(url, auditor), cpu_s(pid)
                r = wrk(url, script, tokens, connections=conns, threads=args.threads,
                        seconds=args.seconds, pause_ms=pause)
                cpu = cpu_s(pid) - cpu0
                late = _late_total(url, auditor) - late0
                load = loadavg()
                runs.append(Run(label, mode, r["requests"] / r["seconds"], r["p50_ms"],
                                r["p99_ms"], int(r["bad"] + r["socket_errors"]),
                                1000 * cpu / max(1.0, r["requests"]), late,
                                1000 * r["gen_cpu_s"] / max(1.0, r["requests"]), True, load, r))
        stored = _stored(work, src)
        accepted = sum(int(run.raw["accepted"]) for run in runs)
        for run in runs:  # every 200 that said "accepted" must be in the store
            run.stored_ok = stored >= accepted
    return runs


def _print(runs: list[Run]) -> None:
    print(f"{'tree':<10} {'mode':<13} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} "
          f"{'CPU ms/req':>10} {'wrk ms/req':>10} {'late':>6} {'durable':>7}  load 1/5/15")
    for r in runs:
        print(f"{r.tree:<10} {r.mode:<13} {r.rps:8.0f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} "
              f"{r.bad:8d} {r.cpu_ms_per_request:10.2f} {r.gen_ms_per_request:10.3f} {r.late:6d} "
              f"{'yes' if r.stored_ok else 'NO':>7}  {r.load}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="label=path/to/src (repeat; default: this tree as 'this')")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--devices", type=int, default=1000, help="devices enrolled")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=64, help="connections, max mode")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--paced", default="1000",
                        type=lambda v: [int(n) for n in v.split(",") if int(n) > 0],
                        help="phones at 1 Hz in the paced runs, comma-separated "
                             "(e.g. 1000,2000; 0: none)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/phones.py: skipped, wrk is not installed (apt-get install -y wrk)")
        return
    trees = [t.partition("=")[::2] for t in args.tree] or [("this", None)]
    print(f"load before: {loadavg()}", flush=True)
    runs: list[Run] = []
    for rnd in range(args.rounds):
        for label, src in trees:
            got = one_tree(label, src or None, args)
            for r in got:
                r.tree = f"{label}" if args.rounds == 1 else f"{label}#{rnd + 1}"
            _print(got)
            runs += got
    print()
    _print(runs)
    if len(trees) > 1:
        first = trees[0][0]
        print(f"\nratios to {first} (medians over rounds):")
        modes = list(dict.fromkeys(r.mode for r in runs))
        for label, _ in trees[1:]:
            for mode in modes:
                def med(tree: str, attr: str, mode: str = mode) -> float:
                    return float(statistics.median(
                        getattr(r, attr) for r in runs
                        if r.tree.split("#")[0] == tree and r.mode == mode))
                def ratio(attr: str, label: str = label) -> float:
                    base = med(first, attr)
                    return med(label, attr) / base if base else float("nan")
                rps, p99, cpu = ratio("rps"), ratio("p99_ms"), ratio("cpu_ms_per_request")
                print(f"  {label:<10} {mode:<13} req/s x{rps:.2f}  p99 x{p99:.2f}  "
                      f"CPU/req x{cpu:.2f}")
    # What the CPU per request allows on 2 idle cores: the server's Python runs one thread
    # at a time (at most one core), and server and wrk together have two.
    print("\nCPU-implied ceiling on 2 idle cores (max mode, medians): "
          "min(1 core / server CPU, 2 cores / (server + wrk CPU)) per request")
    for label, _ in trees:
        mine = [r for r in runs if r.tree.split("#")[0] == label and r.mode == "max"]
        if mine:
            server = statistics.median(r.cpu_ms_per_request for r in mine)
            gen = statistics.median(r.gen_ms_per_request for r in mine)
            print(f"  {label:<10} {min(1000 / server, 2000 / (server + gen)):6.0f} req/s "
                  f"(server {server:.3f} ms, wrk {gen:.3f} ms per request)")
    print("\ntarget (issue 25): >= 2 000 requests/s, p99 < 100 ms, nothing late, durable")


if __name__ == "__main__":
    main()
