"""Distributed mode: a worker (`coverwatch serve --role worker`) SIGKILLed mid-stream.

A gateway (in the test's process) takes an officer's fixes in real time: at the
gate, away long enough for two alerted lapses, back. Two worker processes share
the site; the first owns it and is SIGKILLed inside the second lapse, before
its grace runs out. The other takes the site over within 15 s, resumes from the
checkpoint, and raises the second alert. At the end the alerts in PostgreSQL
equal the alerted lapses of a single-process replay of the stored on-time
events, each raised once (one ``alert.raised`` in the audit log per alert),
and the final checkpoint's lapses equal the replay's.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from clusterkit import ServeProcess, postgres_schema
from clusterkit import replayable as _replayable
from natskit import NATS_URL, cleanup, need_nats, unique_names, wait_for
from test_live_equivalence import replay_lapses

from coverwatch.bus import BusNames, Checkpoints, connect, open_bucket
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.replay import lapse_record
from coverwatch.server.buscover import BusCover
from coverwatch.server.clusterworker import checkpoint_secret
from serverkit import Kit, WallClock, base_settings, running_server, write_site

# (seconds from the start, at the gate?): the site's grace is 10 s.
PLAN = [(0, True), (6, False), (22, True), (28, False), (46, True), (52, False),
        (57, True), (62, None)]
KILL_AT_S = 33  # inside the second lapse, before its alert
ESCALATION = """escalation:
  default:
    - after_s: 0
      notify: [supervisor]
"""


async def _owner(names: BusNames, site: str) -> str | None:
    nc = await connect(NATS_URL)
    try:
        kv = await open_bucket(nc.jetstream(), names.leases)
        entry = await kv.get(f"site.{site}")
        return str(orjson.loads(entry.value)["owner"]) if entry.value else None
    except Exception:
        return None
    finally:
        await nc.close()


def test_a_killed_worker_is_taken_over_and_alerts_equal_replay(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site_path = write_site(tmp_path, extra=ESCALATION)
    data = tmp_path / "data"
    procs: list[ServeProcess] = []
    try:
        with postgres_schema(data) as db:
            settings = base_settings(site_path, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role="gateway")
            with running_server(settings, WallClock()) as gw:
                def worker(n: int) -> ServeProcess:
                    p = ServeProcess(site_path, data, db, names, "worker",
                                     tmp_path / f"worker{n}.log")
                    procs.append(p)
                    return p.start()

                victim = worker(1)
                site = gw.svc.site.id
                assert asyncio.run(wait_for(lambda: _owner(names, site), 20))
                first = asyncio.run(_owner(names, site))
                worker(2)
                _scenario(gw, names, site, first, victim, tmp_path, site_path)
    finally:
        for p in procs:
            p.stop()
        asyncio.run(cleanup(NATS_URL, names))


def _scenario(gw: Kit, names: BusNames, site: str, first: str | None, victim: ServeProcess,
              tmp_path: Path, site_path: Path) -> None:
    feeder = gw.api_token("feeder", "ingest")
    start = time.monotonic()
    t0 = gw.clock()
    r = gw.post_events(feeder, [{"t": format_time(t0), "kind": "duty", "officer": "A1",
                                 "on": True}])
    assert r.status_code == 200, r.text
    killed_at = taken_at = None
    killed_us = 0
    plan = iter(PLAN[1:])
    at_gate: bool | None = PLAN[0][1]
    change_s, next_gate = next(plan)
    while at_gate is not None:
        now_s = time.monotonic() - start
        if now_s >= change_s:
            at_gate = next_gate
            change_s, next_gate = next(plan, (1e9, None))
            continue
        if killed_at is None and now_s >= KILL_AT_S:
            victim.kill()
            killed_at, killed_us = time.monotonic(), gw.clock()
        elif killed_at is not None and taken_at is None:
            owner = asyncio.run(_owner(names, site))
            if owner is not None and owner != first:
                taken_at = time.monotonic()
        x = 0.0 if at_gate else 80.0
        r = gw.post_events(feeder, [{"t": format_time(gw.clock()), "kind": "fix",
                                     "officer": "A1", "x": x, "y": 0.0, "accuracy_m": 5}])
        assert r.status_code == 200, r.text
        time.sleep(0.5)
    # Taken over within 15 s of the kill (seen while the fixes kept coming).
    assert killed_at is not None and taken_at is not None
    assert taken_at - killed_at < 15
    print(f"taken over {taken_at - killed_at:.2f} s after the kill")

    end = gw.clock()
    store = gw.svc.store
    secret = checkpoint_secret(gw.svc)
    model = load_site(site_path)

    async def final_cover() -> BusCover | None:
        nc = await connect(NATS_URL)
        try:
            cps = Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints))
            cp = await cps.load(site)
        finally:
            await nc.close()
        if cp is None or cp.state is None:
            return None
        cover = BusCover(model, secret=secret, state=cp.state)
        return cover if cover.live.horizon > end + US_PER_S else None

    assert asyncio.run(wait_for(final_cover, 30))
    cover = asyncio.run(final_cover())
    assert cover is not None
    horizon = cover.live.horizon
    rows = [r for r in store.events_since(0, limit=10_000) if r["t_us"] < horizon]
    on_time = [_replayable(r) for r in rows if not r["late"]]
    replayed = replay_lapses(site_path, on_time, horizon - 1, tmp_path)
    live = [lapse_record(lp) for lp in cover.live.lapses(include_open=True)]
    assert live == replayed
    alerted = {(lp["post"], lp["rule"], lp["start"]) for lp in replayed if lp["alert_at"]}
    assert len(alerted) == 2
    stored = [a for a in store.load_alerts() if a["kind"] == "lapse"]
    assert {(a["post"], a["rule"], format_time(a["lapse_start"])) for a in stored} == alerted
    audit = store.audit_entries(limit=100_000)
    raised = [e for e in audit if e.action == "alert.raised" and e.subject.startswith(
        "alert:lapse")]
    assert sorted(e.subject for e in raised) == sorted(f"alert:{a['id']}" for a in stored)
    # Each alert's first level sent once, by its owner at the time.
    due = sorted(e.subject for e in audit if e.action == "alert.level-due.0")
    assert due == sorted(f"alert:{a['id']}" for a in stored)
    # One alert was the victim's, the other the survivor's (raised after the kill).
    assert sorted(parse_time(e.at) > killed_us for e in raised) == [False, True]
    # No dead-man alarm for the kill: the takeover was quicker. (One at the start is the
    # machine's load: the gateway runs while the first worker process boots.)
    assert not [a for a in store.load_alerts()
                if a["rule"].startswith("deadman:") and a["alert_at"] > killed_us]
