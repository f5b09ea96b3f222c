"""Failover of many sites: one worker owns N quiet sites, is SIGKILLed, and a survivor takes all.

For each N (default 100 and 1 000) this publishes to a fresh stream, for every FICTIONAL site
(bench/cluster.py's depot), a few officers' duty and fixes, then starts a *victim* worker
process (``bus.Worker`` + ``server/buscover.py``, default ``WorkerSettings``: lease 6 s,
renewal 1 s) over all N and waits until it owns every site and has checkpointed each past
its events. A *survivor* worker process is started with no sites (so the victim keeps all N:
a survivor that knew them would be handed half), settles, and at the kill is given the full
list (it reads it every round; until the victim's leases are stale it could take nothing
anyway). Then: SIGKILL the victim and time, from the kill,

- **owned**: until the survivor holds every site's lease (a watch on the leases bucket);
- **evaluated again**: until every site's checkpoint is the survivor's and past the
  stream's tail at the kill (a watch on the checkpoints bucket): each site restored,
  re-read and evaluated by the survivor.

and the survivor's CPU time per site from the kill to the last site evaluated again (the
per-site cost of a failover), then per site per second over 10 s with all N owned and idle
(what a quiet site costs its owner: watermarks, checkpoints, leases).

Uses the shared NATS (COVERWATCH_BENCH_NATS_URL) under a random ``cwb-…`` prefix, deleted at
the end. The load average is printed with each row: the machine is shared.

    PYTHONPATH=src .venv/bin/python bench/failover.py [--sites 100,1000] [--officers 3] \
        [--partitions 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from cluster import NATS_URL, cleanup, publish_retrying, site_ids, spawn, stop_all

from coverwatch.bus import BusNames, EventLog, connect, open_bucket
from coverwatch.bus.leases import lease_name
from coverwatch.domain.time import US_PER_S

__all__ = ["main"]


def cpu_s(pid: int) -> float:
    """A process's CPU time (user + system), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def few_officers(site: str, officers: int, t0: int, seconds: int) -> list[dict[str, Any]]:
    """A site's duty and a fix per officer per second at post 0 (all covered, nothing lapses)."""
    rows: list[dict[str, Any]] = [
        {"kind": "duty", "t_us": t0, "officer": f"{site}/o{k}", "on": True, "capabilities": []}
        for k in range(officers)]
    rows += [{"kind": "fix", "t_us": t0 + s * US_PER_S + k, "officer": f"{site}/o{k}",
              "x": 0.0, "y": 0.0, "accuracy": 5.0}
             for s in range(seconds) for k in range(officers)]
    return rows


class Watch:
    """Who holds each site's lease, and each site's latest checkpoint (owner, seq), with times."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}
        self.cp: dict[str, tuple[str, int]] = {}
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, leases: Any, checkpoints: Any) -> None:
        self.tasks = [asyncio.create_task(self._follow(leases, self._lease)),
                      asyncio.create_task(self._follow(checkpoints, self._checkpoint))]

    async def _follow(self, kv: Any, note: Any) -> None:
        while True:
            try:
                async for entry in await kv.watchall():
                    if entry is not None and entry.key.startswith("site."):
                        note(entry.key[5:], entry.value, entry.operation)
                        self.changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a slow NATS: watch again
                print(f"  watch restarts: {e!r}", flush=True)
                await asyncio.sleep(0.5)

    def _lease(self, site: str, value: bytes | None, op: str | None) -> None:
        if op in ("DEL", "PURGE") or not value:
            self.owner.pop(site, None)
        else:
            self.owner[site] = str(orjson.loads(value)["owner"])

    def _checkpoint(self, site: str, value: bytes | None, op: str | None) -> None:
        if value and op not in ("DEL", "PURGE"):
            head = orjson.loads(value.partition(b"\n")[0])
            self.cp[site] = (str(head["owner"]), int(head["seq"]))

    async def until(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
        return True

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def one(n: int, officers: int, work: Path, timeout: float,
              partitions: int | None, term: bool = False) -> dict[str, Any]:
    names = BusNames(f"cwb-{uuid.uuid4().hex[:8]}")
    sites = site_ids(n, "fo")
    nc = await connect(NATS_URL)
    js = nc.jetstream()
    log = EventLog(js, names)
    await log.ensure()
    watch = Watch()
    await watch.start(await open_bucket(js, names.leases),
                      await open_bucket(js, names.checkpoints))
    victim_file, survivor_file = work / f"victim-{n}", work / f"survivor-{n}"
    procs: list[Any] = []
    try:
        t0 = time.time_ns() // 1000 - 30 * US_PER_S
        batches = [(s, [(f"{s}/{i}", r) for i, r in enumerate(few_officers(s, officers, t0, 10))])
                   for s in sites]
        last_event: dict[str, int] = {}
        for lo in range(0, len(batches), 50):
            group = batches[lo:lo + 50]
            for (s, _), acks in zip(group, await publish_retrying(log, group), strict=True):
                last_event[s] = max(a.seq for a in acks)
        victim_file.write_text("\n".join(sites))
        started = time.monotonic()
        procs.append(spawn(names.prefix, "victim", victim_file, "wall"))
        assert await watch.until(lambda: sum(
            1 for s in sites if watch.cp.get(s, ("", 0))[0] == "victim"
            and watch.cp[s][1] >= last_event[s]) == n, timeout), "the victim never got ready"
        ready_s = time.monotonic() - started
        survivor_file.write_text("")
        procs.append(spawn(names.prefix, "survivor", survivor_file, "wall"))
        await asyncio.sleep(3.0)  # the survivor's heartbeat is seen; the victim is steady
        tails: dict[str, int] = {}
        for lo in range(0, n, 200):
            chunk = sites[lo:lo + 200]
            tails.update(zip(chunk, await asyncio.gather(*(log.last_seq(s) for s in chunk)),
                             strict=True))
        load = os.getloadavg()[0]
        procs[0].send_signal(signal.SIGTERM if term else signal.SIGKILL)
        killed = time.monotonic()
        if not term:
            procs[0].wait()
        survivor_file.write_text("\n".join(sites))
        owned: dict[str, float] = {}
        evaluated: dict[str, float] = {}
        exited: list[float] = []  # when the victim's process ended (SIGTERM: its shutdown)

        def done() -> bool:
            now = time.monotonic() - killed
            if not exited and procs[0].poll() is not None:
                exited.append(now)
            for s in sites:
                if s not in owned and watch.owner.get(lease_name(s, partitions)) == "survivor":
                    owned[s] = now
                cp = watch.cp.get(s)
                if s not in evaluated and cp is not None and cp[0] == "survivor" \
                        and cp[1] >= tails[s]:
                    evaluated[s] = now
            return len(evaluated) == n and (bool(exited) or not term)

        cpu_kill = cpu_s(procs[1].pid)
        finished = await watch.until(done, timeout)
        cpu_done = cpu_s(procs[1].pid)
        # The survivor's steady cost, idle: CPU per site per second with all N owned.
        await asyncio.sleep(2.0)
        c0, t0_idle = cpu_s(procs[1].pid), time.monotonic()
        await asyncio.sleep(10.0)
        idle_ms = (cpu_s(procs[1].pid) - c0) / (time.monotonic() - t0_idle) / n * 1000
        return {"cpu_per_site_ms": (cpu_done - cpu_kill) / n * 1000, "idle_ms": idle_ms,
                "exited": exited[0] if exited else None,
                "sites": n, "officers": officers, "ready_s": ready_s, "finished": finished,
                "owned": sorted(owned.values()), "evaluated": sorted(evaluated.values()),
                "load_kill": load, "load_end": os.getloadavg()[0]}
    finally:
        stop_all(procs)
        await watch.stop()
        await nc.close()
        await cleanup(names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sites", default="100,1000")
    ap.add_argument("--officers", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--term", action="store_true",
                    help="SIGTERM the victim (a clean stop: it hands its sites over) instead "
                         "of SIGKILL; also prints when its process ended")
    ap.add_argument("--partitions", type=int, default=0,
                    help="leases per partition, this many (0: a lease per site)")
    args = ap.parse_args()
    # The worker processes (bench/cluster.py) read it from the environment.
    os.environ["COVERWATCH_BUS_PARTITIONS"] = str(args.partitions)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"cw-failover-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    print(f"failover: {os.cpu_count()} CPUs shared; load average {os.getloadavg()[0]:.2f}; "
          f"{args.officers} officers per site, lease 6 s, renewal 1 s, "
          f"{args.partitions or 'no'} partitions; the victim is sent "
          f"{'SIGTERM' if args.term else 'SIGKILL'}", flush=True)
    print("| sites | victim ready s | first / median / all owned s "
          "| first / median / all evaluated again s | survivor CPU per site taken over ms "
          "| survivor CPU per site-second idle ms | victim exited s | load at kill / end |")
    print("|---:|---:|---:|---|---:|---:|---:|---|", flush=True)
    for n in (int(x) for x in args.sites.split(",")):
        r = asyncio.run(one(n, args.officers, work, args.timeout, args.partitions or None,
                            args.term))
        ev = r["evaluated"]
        ow = r["owned"]
        owned = (f"{ow[0]:.2f} / {statistics.median(ow):.2f} / {ow[-1]:.2f}" if len(ow) == n
                 else f"{len(ow)} only")
        evs = (f"{ev[0]:.2f} / {statistics.median(ev):.2f} / {ev[-1]:.2f}" if r["finished"]
               else f"{len(ev)} of {n} after {args.timeout:.0f} s")
        print(f"| {n} | {r['ready_s']:.1f} | {owned} | {evs} | {r['cpu_per_site_ms']:.2f} | "
              f"{r['idle_ms']:.3f} | "
              f"{'-' if r['exited'] is None else format(r['exited'], '.2f')} | "
              f"{r['load_kill']:.1f} / {r['load_end']:.1f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
