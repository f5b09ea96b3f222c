"""Cluster benchmark: events/s through the bus with 1, 2, 3 worker processes, and failover.

Everything runs on THIS machine: the worker processes, this driver, NATS and
(for the other helpers' work) PostgreSQL share its cores (2 vCPUs here), so
more workers cannot mean proportionally more throughput; the figures say how
much each worker still adds. Sites are FICTIONAL (generated depots).

  throughput  100 sites, 20 officers each fixing every second, with watermarks every
              5 s of event time, are published once to a stream (one message per
              event, Nats-Msg-Id = its key, every PubAck awaited: the gateway's path).
              Then, for 1, 2 and 3 worker processes (bus.Worker + server/buscover.py,
              the live cover engine), fresh lease and checkpoint buckets: the time
              from handing the workers the site list to every site's checkpoint
              reaching the end of its subject (``--batch N``: messages of up to N
              events of a site instead, read by the same workers). Baseline, in the
              same run: the same events through the same LiveCover in this one process, no bus.
              Efficiency = rate(k workers) / (k x baseline rate), both end to end
              (acquiring the 100 leases while the backlog pours in included) and
              over the middle half of the events (25 % to 75 % evaluated, counted
              from the checkpoints), which leaves out start-up and the tail.
  failover    20 sites, 3 workers, a publisher at ~100 events/s in wall-clock time;
              N times: SIGKILL the worker owning the most sites, measure until every
              one of its sites is owned by a live worker (takeover) and until each
              has checkpointed past the stream's tail at the kill (caught up; the
              checkpoint interval, 1 s, is included); start a replacement, rebalance.

Uses the shared NATS (COVERWATCH_BENCH_NATS_URL, default nats://127.0.0.1:4222) under a
random ``cwb-…`` prefix, deleted at the end. Never restarts NATS.

    .venv/bin/python bench/cluster.py                      # both, ~4 minutes
    .venv/bin/python bench/cluster.py --only throughput --seconds 60
    .venv/bin/python bench/cluster.py --only failover --kills 10
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from coverwatch.bus import BusNames, EventLog, Worker, WorkerSettings, connect, open_bucket
from coverwatch.bus.checkpoints import Checkpoints
from coverwatch.cli.serving import tune_gc
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.formats.sitefile import load_site_text
from coverwatch.server.buscover import BusCover
from coverwatch.server.live import LiveCover

__all__ = ["main"]

NATS_URL = os.environ.get("COVERWATCH_BENCH_NATS_URL", "nats://127.0.0.1:4222")
SECRET = b"bench secret"
LATENESS_US = 2 * US_PER_S
POSTS = 6
OFFICERS = 20
T0 = parse_time("2030-01-01T08:00:00Z")


def site_yaml(site_id: str) -> str:
    """A fictional depot: six point posts 100 m apart, one cover rule each."""
    lines = [f"site: {site_id}", "name: Bench Depot (fictional)", "timezone: UTC",
             "stale_after_s: 30", "posts:"]
    for i in range(POSTS):
        lines += [f"  - id: post-{i}", f"    at: [{i * 100.0}, 0]", "    rules:",
                  "      - {id: cover, need: 2, within_m: 25, grace_s: 10}"]
    return "\n".join(lines) + "\n"


def site_ids(n: int, tag: str) -> list[str]:
    return [f"{tag}-{i:03d}" for i in range(n)]


def site_of(site_id: str) -> Site:
    return load_site_text(site_yaml(site_id), f"<{site_id}>")


def shift(site_id: str, seconds: int, t0: int, seed: int) -> list[dict[str, Any]]:
    """One site's events in time order (duty on, then a fix per officer per second)."""
    rng = random.Random(f"{site_id}/{seed}")
    rows: list[dict[str, Any]] = [
        {"kind": "duty", "t_us": t0, "officer": f"{site_id}/o{k}", "on": True,
         "capabilities": []} for k in range(OFFICERS)]
    home = [rng.randrange(POSTS) for _ in range(OFFICERS)]
    for s in range(seconds):
        for k in range(OFFICERS):
            if rng.random() < 0.02:
                home[k] = rng.randrange(POSTS) if rng.random() < 0.7 else -1  # -1: away
            x = home[k] * 100.0 if home[k] >= 0 else 1000.0
            rows.append({"kind": "fix", "t_us": t0 + s * US_PER_S + k, "officer":
                         f"{site_id}/o{k}", "x": x + rng.uniform(-8, 8),
                         "y": rng.uniform(-8, 8), "accuracy": 5.0})
    return rows


# -- the worker process -----------------------------------------------------------


async def worker_main(prefix: str, wid: str, sites_file: str, clock: str) -> None:
    nc = await connect(NATS_URL)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sites: dict[str, Site] = {}

    def current() -> list[str]:
        path = Path(sites_file)
        return path.read_text().split() if path.exists() else []

    def factory(site_id: str, state: bytes | None) -> BusCover:
        if site_id not in sites:
            sites[site_id] = site_of(site_id)
        return BusCover(sites[site_id], secret=SECRET, lateness_us=LATENESS_US, state=state)

    fixed = None if clock == "wall" else int(clock)

    def clock_us() -> int:
        return fixed if fixed is not None else time.time_ns() // 1000

    if os.environ.get("COVERWATCH_BENCH_GC") != "default":
        tune_gc()  # as `coverwatch serve` (every role) does once it is built
    worker = Worker(nc, sites=current, factory=factory, names=BusNames(prefix),
                    settings=WorkerSettings(partitions=int(os.environ.get(
                        "COVERWATCH_BUS_PARTITIONS", "0")) or None),
                    worker_id=wid, clock_us=clock_us,
                    lease_url=NATS_URL)
    await worker.start()
    print("ready", flush=True)
    await worker.run(stop)
    await nc.close()


def spawn(prefix: str, wid: str, sites_file: Path, clock: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", prefix, wid, str(sites_file), clock],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(30)
        if p.poll() is None:
            p.kill()


# -- helpers on the driver's side --------------------------------------------------


async def owners(kv: Any) -> dict[str, str]:
    out = {}
    try:
        keys = [k for k in await kv.keys() if k.startswith("site.")]
    except Exception:
        return out
    for key in keys:
        with contextlib.suppress(Exception):
            entry = await kv.get(key)
            if entry.value:
                out[key[5:]] = orjson.loads(entry.value)["owner"]
    return out


async def checkpoint_seqs(cps: Checkpoints, sites: list[str]) -> dict[str, int]:
    out = {}
    for s in sites:
        cp = await cps.load(s)
        out[s] = cp.seq if cp is not None else 0
    return out


async def reset_buckets(js: Any, names: BusNames) -> None:
    for stream in (f"KV_{names.leases}", f"KV_{names.checkpoints}"):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)


async def cleanup(names: BusNames) -> None:
    nc = await connect(NATS_URL)
    js = nc.jetstream()
    await reset_buckets(js, names)
    with contextlib.suppress(Exception):
        await js.delete_stream(names.stream)
    await nc.close()


async def publish_retrying(log: EventLog, group: list[tuple[str, Any]]) -> list[Any]:
    """Publish several sites' batches together; on a timeout, again (the ids dedup)."""
    for attempt in range(10):
        try:
            return list(await asyncio.gather(*(log.publish(s, b, timeout=20.0)
                                                for s, b in group)))
        except Exception as e:
            print(f"  publish retried ({e!r}), attempt {attempt + 2}", flush=True)
    raise RuntimeError("publishing keeps failing")


async def publish_batched(log: EventLog, group: list[tuple[str, Any]], size: int
                          ) -> list[list[int]]:
    """As publish_retrying, in messages of up to ``size`` events (``--batch``): each
    event's stream sequence (those of one message share it)."""
    async def site(s: str, batch: list[tuple[str, Any]]) -> list[int]:
        chunks = [batch[i:i + size] for i in range(0, len(batch), size)]
        acks = await asyncio.gather(*(log.publish_events(s, c, f"{c[0][0]}+{len(c)}",
                                                         timeout=20.0) for c in chunks))
        return [a.seq for a, c in zip(acks, chunks, strict=True) for _ in c]

    for attempt in range(10):
        try:
            return list(await asyncio.gather(*(site(s, b) for s, b in group if b)))
        except Exception as e:
            print(f"  publish retried ({e!r}), attempt {attempt + 2}", flush=True)
    raise RuntimeError("publishing keeps failing")


# -- throughput ---------------------------------------------------------------------


def baseline(shifts: dict[str, list[dict[str, Any]]], step_s: int) -> tuple[int, float]:
    """The same events through LiveCover in this process, no bus: (events, seconds)."""
    n = 0
    t = time.perf_counter()
    for site_id, rows in shifts.items():
        live = LiveCover(site_of(site_id), lateness_us=LATENESS_US, start_horizon=-(2**62))
        window: list[dict[str, Any]] = []
        end = T0 + step_s * US_PER_S
        for seq, r in enumerate(rows, 1):
            if r["t_us"] >= end:
                live.add(window)
                live.advance_to(end)
                window, end = [], end + step_s * US_PER_S
            window.append({**r, "id": seq})
        live.add(window)
        live.advance_to(end)
        n += len(rows)
    return n, time.perf_counter() - t


async def throughput(args: argparse.Namespace, work: Path) -> list[tuple[str, ...]]:
    names = BusNames(f"cwb-{uuid.uuid4().hex[:8]}")
    sites = site_ids(args.sites, "depot")
    step_s = 5
    shifts = {s: shift(s, args.seconds, T0, 1) for s in sites}
    total = sum(len(r) for r in shifts.values())
    print(f"throughput: {len(sites)} sites x {OFFICERS} officers x {args.seconds} s = "
          f"{total} events", flush=True)
    if os.environ.get("COVERWATCH_BENCH_GC") != "default":
        tune_gc()  # the single process's setting, as for the workers
    cpu0 = time.process_time()
    base_n, base_s = baseline(shifts, step_s)
    base_cpu = time.process_time() - cpu0
    base_rate = base_n / base_s
    print(f"  baseline, one process, no bus: {base_rate:,.0f} events/s", flush=True)
    rows: list[tuple[str, ...]] = [
        ("single process, no bus (baseline)", f"{base_n}", f"{base_s:.2f}",
         f"{base_rate:,.0f}", "1.00", "", "", "", f"{base_cpu:.2f}", "1.00", "")]
    nc = await connect(NATS_URL)
    js = nc.jetstream()
    log = EventLog(js, names)
    await log.ensure()
    try:
        t = time.perf_counter()
        last: dict[str, int] = {}
        event_seqs: dict[str, list[int]] = {}  # each site's events' stream sequences
        cursor = {s: 0 for s in sites}
        for end_s in range(step_s, args.seconds + step_s, step_s):
            end = T0 + end_s * US_PER_S
            batches = []
            for s in sites:
                rows_s, i = shifts[s], cursor[s]
                j = i
                while j < len(rows_s) and rows_s[j]["t_us"] < end:
                    j += 1
                batches.append((s, [(f"{s}/{k}", rows_s[k]) for k in range(i, j)]))
                cursor[s] = j
            # A window of every site at once, as many gateways would publish it.
            for lo in range(0, len(batches), 10):
                group = batches[lo:lo + 10]
                if args.batch:
                    group = [(s, b) for s, b in group if b]
                    for (s, _), at in zip(group, await publish_batched(log, group, args.batch),
                                          strict=True):
                        event_seqs.setdefault(s, []).extend(at)
                    continue
                acks = await publish_retrying(log, group)
                for (s, _), published in zip(group, acks, strict=True):
                    event_seqs.setdefault(s, []).extend(p.seq for p in published)
            seqs = await asyncio.gather(*(log.publish_watermark(s, end) for s in sites))
            last.update(zip(sites, seqs, strict=True))
        pub_s = time.perf_counter() - t
        print(f"  published (every PubAck awaited): {total / pub_s:,.0f} events/s", flush=True)
        rows.append(("publish to the stream, 1 client", f"{total}", f"{pub_s:.2f}",
                     f"{total / pub_s:,.0f}", "", "", "", "", "", "", "a gateway's side"))
        # The bus alone: one process reading every site's subject, decoding, no evaluation.
        read = 0
        done = asyncio.Event()

        async def count(_: Any) -> None:
            nonlocal read
            read += 1
            if read >= total + len(sites) * (args.seconds // step_s):
                done.set()

        t = time.perf_counter()
        subs = [await log.follow(s, 0, count) for s in sites]
        await done.wait()
        read_s = time.perf_counter() - t
        for sub in subs:
            await sub.unsubscribe()
        print(f"  read back by one process (decode only): {read / read_s:,.0f} messages/s",
              flush=True)
        rows.append(("read back by 1 process, no evaluation", f"{read}", f"{read_s:.2f}",
                     f"{read / read_s:,.0f}", "", "", "", "", "", "",
                     "the bus's per-process ceiling"))
        final_clock = str(T0 + (args.seconds + step_s) * US_PER_S)
        one_rate = one_steady = None
        for k in (int(w) for w in args.workers.split(",")):
            await reset_buckets(js, names)
            sites_file = work / f"sites-{k}"
            procs = [spawn(names.prefix, f"w{k}-{i}", sites_file, final_clock)
                     for i in range(k)]
            try:
                kv = await open_bucket(js, names.leases)
                cps = Checkpoints(await open_bucket(js, names.checkpoints))
                await asyncio.sleep(1.5)  # heartbeats: each sees the others before sites come
                cpu_at_start = sum(cpu_s(p.pid) for p in procs)
                sites_file.write_text("\n".join(sites))
                t = time.perf_counter()
                owned_at = None
                samples: list[tuple[float, int]] = []  # (time, events checkpointed)
                while True:
                    await asyncio.sleep(0.25)
                    seqs = await checkpoint_seqs(cps, sites)
                    now = time.perf_counter() - t
                    samples.append((now, sum(bisect.bisect_right(event_seqs[s], seqs[s])
                                             for s in sites)))
                    if owned_at is None and len(await owners(kv)) == len(sites):
                        owned_at = now
                    if all(seqs[s] >= last[s] for s in sites):
                        break
                took = time.perf_counter() - t
                # From the site list to the end: claims, restores, evaluation, checkpoints.
                work_cpu = sum(cpu_s(p.pid) for p in procs) - cpu_at_start
                spread = sorted((await owners(kv)).values())
                loads = sorted(spread.count(w) for w in set(spread))
            finally:
                stop_all(procs)
            rate = total / took
            assert owned_at is not None
            # While busy: the rate over the middle half of the events (from 25 % to
            # 75 % checkpointed), which leaves out start-up and the tail.
            q1 = next(ts for ts, n in samples if n >= total * 0.25)
            q3 = next(ts for ts, n in samples if n >= total * 0.75)
            steady = total * 0.5 / (q3 - q1) if q3 > q1 else float("nan")
            steady_s = q3 - q1
            one_rate = one_rate or rate
            one_steady = one_steady or steady
            eff = rate / (k * base_rate)
            print(f"  {k} worker(s): {rate:,.0f} events/s in {took:.2f} s end to end (all "
                  f"{len(sites)} sites owned after {owned_at:.2f} s; sites per worker {loads}); "
                  f"middle half at {steady:,.0f} events/s ({steady_s:.1f} s); workers' CPU "
                  f"{work_cpu:.2f} s against the baseline's {base_cpu:.2f} s", flush=True)
            rows.append((f"{k} worker process(es)", f"{total}", f"{took:.2f}", f"{rate:,.0f}",
                         f"{eff:.2f}", f"{rate / (k * one_rate):.2f}",
                         f"{steady:,.0f}", f"{steady / (k * base_rate):.2f}",
                         f"{work_cpu:.2f}", f"{base_cpu / work_cpu:.2f}",
                         f"middle half {steady / (k * one_steady):.2f} of 1 worker each; "
                         f"sites/worker {loads}; all owned at {owned_at:.1f} s"))
    finally:
        await nc.close()
        await cleanup(names)
    return rows


# -- failover -----------------------------------------------------------------------


async def failover(args: argparse.Namespace, work: Path) -> list[tuple[str, ...]]:
    names = BusNames(f"cwb-{uuid.uuid4().hex[:8]}")
    sites = site_ids(20, "post")
    sites_file = work / "sites-failover"
    sites_file.write_text("\n".join(sites))
    nc = await connect(NATS_URL)
    js = nc.jetstream()
    log = EventLog(js, names)
    await log.ensure()
    kv = await open_bucket(js, names.leases)
    cps = Checkpoints(await open_bucket(js, names.checkpoints))
    procs: dict[str, subprocess.Popen[str]] = {}
    n = 0
    for _ in range(3):
        procs[f"f{n}"] = spawn(names.prefix, f"f{n}", sites_file, "wall")
        n += 1
    stop = asyncio.Event()

    async def publish() -> None:
        i = 0
        while not stop.is_set():
            now = time.time_ns() // 1000
            await asyncio.gather(*(log.publish(s, [(f"{s}/{i}", {
                "kind": "fix", "t_us": now, "officer": f"{s}/o{i % 5}", "x": 0.0, "y": 0.0,
                "accuracy": 5.0})]) for s in sites))
            i += 1
            await asyncio.sleep(0.2)

    async def balanced() -> bool:
        got = await owners(kv)
        live = set(procs)
        return (len(got) == len(sites) and set(got.values()) == live
                and min(list(got.values()).count(w) for w in live) >= len(sites) // 3)

    pub = asyncio.create_task(publish())
    takeovers: list[float] = []
    caught: list[float] = []
    try:
        for kill in range(args.kills):
            while not await balanced():
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.0)
            got = await owners(kv)
            victim = max(procs, key=lambda w: list(got.values()).count(w))
            lost = [s for s, w in got.items() if w == victim]
            tails = {s: await log.last_seq(s) for s in lost}
            procs[victim].send_signal(signal.SIGKILL)
            t = time.perf_counter()
            procs.pop(victim).wait()
            took_over = None
            while True:
                await asyncio.sleep(0.1)
                now = await owners(kv)
                if took_over is None and all(now.get(s) in procs for s in lost):
                    took_over = time.perf_counter() - t
                if took_over is not None:
                    seqs = await checkpoint_seqs(cps, lost)
                    if all(seqs[s] >= tails[s] for s in lost):
                        break
            done = time.perf_counter() - t
            takeovers.append(took_over)
            caught.append(done)
            print(f"  kill {kill + 1}: {len(lost)} sites taken over after {took_over:.2f} s, "
                  f"caught up after {done:.2f} s", flush=True)
            procs[f"f{n}"] = spawn(names.prefix, f"f{n}", sites_file, "wall")
            n += 1
    finally:
        stop.set()
        await pub
        stop_all(list(procs.values()))
        await nc.close()
        await cleanup(names)

    def mmm(xs: list[float]) -> str:
        return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"

    return [("takeover (lease moved to a live worker)", str(len(takeovers)), mmm(takeovers)),
            ("caught up (checkpoint past the tail at the kill)", str(len(caught)), mmm(caught))]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(worker_main(*sys.argv[2:6]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="throughput,failover")
    ap.add_argument("--sites", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=60, help="event time per site")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--batch", type=int, default=0,
                    help="throughput: messages of up to N events (0: one per event, as "
                         "the gateway publishes today)")
    ap.add_argument("--workers", default="1,2,3",
                    help="throughput: the counts of worker processes to run, in turn")
    args = ap.parse_args()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"cw-cluster-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    print(f"machine: {os.cpu_count()} CPUs shared by NATS, this driver and every worker; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    only = set(args.only.split(","))
    if "throughput" in only:
        rows = asyncio.run(throughput(args, work))
        print("\n| run | events | time s | events/s end to end | efficiency vs baseline "
              "| per worker vs 1 worker | events/s, middle half | efficiency, middle half "
              "| CPU s | baseline CPU / CPU | note |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    if "failover" in only:
        print(f"failover: 20 sites, 3 workers (lease 6 s, renew 1 s), {args.kills} kills",
              flush=True)
        rows = asyncio.run(failover(args, work))
        print("\n| measure | kills | min / median / max s |")
        print("|---|---:|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
