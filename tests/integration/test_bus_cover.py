"""The live cover engine through the bus equals a single-process replay, across a SIGKILL.

Two worker processes run ``server/buscover.py`` on the example site; the
first owns it. A generated shift (tests/integration/test_live_equivalence.py)
is published window by window, each window shuffled, while the test moves the
workers' clock (a file) so their watermarks follow. Halfway, the owner is
SIGKILLed; the other takes the site over from the checkpoint and the stream.
At the end, the lapses in the final checkpoint equal ``replay`` over the same
events in the same order, and every alert either worker raised is one of the
replay's, each raised with identical content whoever raised it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson
from busworker import LATENESS_US, SECRET
from natskit import NATS_URL, cleanup, need_nats, spawn_worker, unique_names, wait_for
from test_live_equivalence import generate_shift, replay_lapses

from coverwatch.bus import BusNames, Checkpoints, EventLog, connect, open_bucket
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.replay import lapse_record
from coverwatch.server.buscover import BusCover
from serverkit import YARD

WINDOW_S = 10


def set_clock(path: Path, t_us: int) -> None:
    """Move the workers' clock (atomically: they read it at any moment)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(t_us))
    os.replace(tmp, path)


def _row(e: dict[str, Any]) -> dict[str, Any]:
    """An event as the store's columns (what a gateway publishes)."""
    row = {k: v for k, v in e.items() if k not in ("t", "accuracy_m")}
    row["t_us"] = e["t"]
    if "accuracy_m" in e:
        row["accuracy"] = e["accuracy_m"]
    return row


async def _owner(names: BusNames, site: str) -> str | None:
    nc = await connect(NATS_URL)
    kv = await open_bucket(nc.jetstream(), names.leases)
    try:
        entry = await kv.get(f"site.{site}")
        return str(orjson.loads(entry.value)["owner"]) if entry.value else None
    except Exception:
        return None
    finally:
        await nc.close()


def test_cover_through_the_bus_equals_replay_across_a_takeover(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site = load_site(YARD)
    clock = tmp_path / "clock"
    t0 = parse_time("2030-01-01T08:00:00Z")
    set_clock(clock, t0)
    out = tmp_path / "outputs.jsonl"
    events = generate_shift(t0 + US_PER_S, 7)
    procs: list[subprocess.Popen[str]] = []

    async def body() -> None:
        nc = await connect(NATS_URL)
        log = EventLog(nc.jetstream(), names)
        await log.ensure()
        args = (str(YARD), str(clock))
        procs.append(spawn_worker(names, "victim", [site.id], out, *args))
        assert await wait_for(lambda: _is_owner(names, site.id, "victim"), 15)
        procs.append(spawn_worker(names, "survivor", [site.id], out, *args))
        rng = random.Random(7)
        sent: list[dict[str, Any]] = []
        i = 0
        ends = range(t0 + WINDOW_S * US_PER_S, events[-1]["t"] + 2 * WINDOW_S * US_PER_S,
                     WINDOW_S * US_PER_S)
        for n, end in enumerate(ends):
            window = []
            while i < len(events) and events[i]["t"] < end:
                window.append(events[i])
                i += 1
            rng.shuffle(window)
            await log.publish(site.id, [(f"e{len(sent) + k}", _row(e))
                                        for k, e in enumerate(window)])
            sent.extend(window)
            # Only now may the watermark pass these events.
            set_clock(clock, end + LATENESS_US)
            if n == len(ends) // 2:
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait()
            await asyncio.sleep(0.04)
        assert i == len(events)
        final = ends[-1] + 60 * US_PER_S  # then a minute of silence
        set_clock(clock, final + LATENESS_US)
        assert await wait_for(lambda: _is_owner(names, site.id, "survivor"), 15)
        cps = Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints))

        async def at_final() -> BusCover | None:
            cp = await cps.load(site.id)
            if cp is None or cp.state is None:
                return None
            cover = BusCover(site, secret=SECRET, state=cp.state)
            return cover if cover.live.horizon == final else None

        assert await wait_for(at_final, 40)
        cover = await at_final()
        assert cover is not None
        live = [lapse_record(lp) for lp in cover.live.lapses(include_open=True)]
        replayed = replay_lapses(YARD, sent, final - 1, tmp_path)
        assert len(live) >= 5 and any(lp["alert_at"] for lp in live)
        assert live == replayed
        lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        outputs = [o for o in lines if "output" in o]
        assert {o["worker"] for o in outputs} == {"victim", "survivor"}
        # The survivor started from the victim's checkpoint, not from the beginning.
        resumed = [o["resumed_after"] for o in lines if "resumed_after" in o]
        assert resumed[0] == 0 and resumed[-1] > 0
        assert not [o for o in outputs if "keys" in o["output"]]  # nothing was late
        alerts: dict[tuple[str, str, int], set[bytes]] = {}
        for o in outputs:
            ch = o["output"]
            if ch.get("kind") == "alert":
                key = (ch["post"], ch["rule"], ch["lapse_start"])
                alerts.setdefault(key, set()).add(orjson.dumps(ch))
        assert all(len(v) == 1 for v in alerts.values())  # re-made alerts are identical
        alerted = {(lp["post"], lp["rule"], lp["start"]) for lp in live if lp["alert_at"]}
        assert {(p, r, format_time(s)) for p, r, s in alerts} == alerted
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 150))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(20)
        asyncio.run(cleanup(NATS_URL, names))


def _is_owner(names: BusNames, site: str, worker: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await _owner(names, site) == worker
    return check()
