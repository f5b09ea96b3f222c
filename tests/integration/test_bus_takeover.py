"""Takeover: a worker process is SIGKILLed mid-stream and another takes its sites.

Two real worker processes (tests/integration/busworker.py, the reference
evaluator) share four sites; events are published while one is killed. The
survivor owns every site again within 15 s (the issue's bound, used here as
the wait's limit), resumes each from its checkpoint, and its final state per
site equals one uninterrupted pass over the stream: every event taken exactly
once, in stream order. Outputs re-made after the takeover are identical to the
ones the dead worker had already written.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
from natskit import NATS_URL, cleanup, need_nats, spawn_worker, unique_names, wait_for

from coverwatch.bus import BusMessage, BusNames, Checkpoints, EventLog, EventTally, connect
from coverwatch.bus.leases import open_bucket

SITES = ["north", "south", "east", "west"]
PER_SITE = 400


async def _owners(names: BusNames) -> dict[str, str]:
    nc = await connect(NATS_URL)
    kv = await open_bucket(nc.jetstream(), names.leases)
    out = {}
    for site in SITES:
        try:
            entry = await kv.get(f"site.{site}")
        except Exception:
            continue
        if entry.value:
            out[site] = orjson.loads(entry.value)["owner"]
    await nc.close()
    return out


async def _one_pass(log: EventLog, site: str, upto: int) -> tuple[EventTally, list[Any]]:
    """The reference: one evaluator over the whole subject, no takeover."""
    tally = EventTally(site)
    outputs: list[Any] = []
    got: list[BusMessage] = []

    async def collect(m: BusMessage) -> None:
        got.append(m)

    sub = await log.follow(site, 0, collect)
    assert await wait_for(lambda: got and got[-1].seq >= upto, 20)
    await sub.unsubscribe()
    for m in got:
        if m.kind == "event":
            tally.take([m])
        else:
            outputs += [list(o) for o in tally.advance(m.horizon_us)]
    return tally, outputs


def test_sigkilled_worker_is_taken_over_with_no_loss_and_no_double(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    out = tmp_path / "outputs.jsonl"
    procs: list[subprocess.Popen[str]] = []

    async def body() -> None:
        nc = await connect(NATS_URL)
        log = EventLog(nc.jetstream(), names)
        await log.ensure()
        procs.append(spawn_worker(names, "victim", SITES, out))
        assert await wait_for(lambda: _all_owned_by(names, {"victim"}), 15)
        procs.append(spawn_worker(names, "survivor", SITES, out))
        # The first hands half the sites over to the second (release + checkpoint).
        assert await wait_for(lambda: _split(names), 20)
        sent = 0
        killed_at = None
        for i in range(PER_SITE):
            now = time.time_ns() // 1000
            for site in SITES:
                row = {"kind": "fix", "t_us": now, "officer": f"o{i % 7}", "x": 1.0, "y": 2.0}
                await log.publish(site, [(f"{site}-{i}", row)])
                sent += 1
            if i == PER_SITE // 2:
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait()
                killed_at = time.monotonic()
                with out.open("ab") as f:  # a marker among the workers' lines
                    f.write(b'{"killed": true}\n')
            await asyncio.sleep(0.005)
        assert killed_at is not None
        assert await wait_for(lambda: _all_owned_by(names, {"survivor"}), 15)
        # Let the survivor consume everything and checkpoint past the last message.
        cps = Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints))
        last = {s: await log.last_seq(s) for s in SITES}

        async def caught_up() -> bool:
            for s in SITES:
                cp = await cps.load(s)
                if cp is None or cp.seq < last[s]:
                    return False
            return True

        assert await wait_for(caught_up, 30)
        final = {s: await cps.load(s) for s in SITES}
        # Read after the checkpoints: a worker writes outputs before it checkpoints them.
        lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        outputs = [o for o in lines if "output" in o]
        assert {o["worker"] for o in outputs} == {"victim", "survivor"}
        # After the kill the survivor resumed the victim's sites from their
        # checkpoints: past what the victim had already evaluated, not from 0.
        after_kill = lines[next(i for i, o in enumerate(lines) if "killed" in o):]
        taken = [o for o in after_kill if "resumed_after" in o]
        assert len(taken) >= 2 and {o["worker"] for o in taken} == {"survivor"}
        for o in taken:
            done_by_victim = [x["seq"] for x in outputs
                              if x["worker"] == "victim" and x["site"] == o["site"]]
            assert done_by_victim and o["resumed_after"] >= min(done_by_victim)
        for site in SITES:
            cp = final[site]
            assert cp is not None and cp.owner == "survivor" and cp.state is not None
            state = EventTally(site, cp.state)
            reference, ref_outputs = await _one_pass(log, site, cp.seq)
            assert state.events == PER_SITE  # none lost, none taken twice
            assert state.digest == reference.digest  # and in stream order
            # Every output either worker wrote is the reference's, whoever wrote it,
            # and after deduplication by what it is about, nothing is missing.
            mine = {tuple(o["output"]) for o in outputs
                    if o["site"] == site and o["output"][0] <= state.horizon}
            ref = {tuple(o) for o in ref_outputs if o[0] <= state.horizon}
            assert mine == ref
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 150))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(20)
        asyncio.run(cleanup(NATS_URL, names))


def _all_owned_by(names: BusNames, workers: set[str]):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        owners = await _owners(names)
        return set(owners) == set(SITES) and set(owners.values()) == workers
    return check()


def _split(names: BusNames):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        owners = list((await _owners(names)).values())
        return len(owners) == 4 and owners.count("victim") == owners.count("survivor") == 2
    return check()
