"""Distributed mode with many sites: two workers share three sites; one is SIGKILLed mid-stream.

One `coverwatch serve --role gateway` and two `coverwatch serve --role worker`
processes all watch three fictional sites (their own posts and officers). The
workers split the sites between them (each owns at least one; each site has
exactly one owner in the leases bucket). Fixes go to every site through the
gateway's site-scoped route with an ``ingest`` token: at the gate, away long
enough for two alerted lapses, back. The worker owning the most sites is
SIGKILLed inside the second lapse while the fixes keep coming; the survivor
owns every site within 15 s. Then, site by site: every event is stored once
and is once in the site's stream; the alerts in PostgreSQL equal the alerted
lapses of a single-process replay of the site's stored on-time events, each
raised once (one ``alert.raised`` in that site's audit chain per alert) and its
first level sent once; no alert of one site is at another; no dead-man alarm.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import httpx
import orjson
from clusterkit import (
    SITES,
    ServeProcess,
    events_of,
    postgres_schema,
    read_subject,
    site_args,
)
from clusterkit import replayable as _replayable
from clusterkit import write_sites as _write_sites
from natskit import NATS_URL, cleanup, need_nats, unique_names, wait_for
from test_live_equivalence import replay_lapses

from coverwatch.bus import BusNames, Checkpoints, connect, open_bucket
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.replay import lapse_record
from coverwatch.server.buscover import BusCover
from coverwatch.server.clusterworker import checkpoint_secret
from coverwatch.storage import Store, open_store, row_key
from coverwatch.storage.sites import key_for_site, site_store

if TYPE_CHECKING:
    from coverwatch.server.unit import SiteUnit

# (seconds from the start, at the gate?), as in test_bus_worker_kill: the grace is 10 s.
PLAN = [(0, True), (6, False), (22, True), (28, False), (46, True), (52, False),
        (57, True), (62, None)]
KILL_AT_S = 33  # inside the second lapse, before its alert
TAKEOVER_S = 15


async def _leases(names: BusNames) -> tuple[dict[str, str], set[str]]:
    """(site -> owner) of every site key, and the workers with a heartbeat key."""
    nc = await connect(NATS_URL)
    try:
        kv = await open_bucket(nc.jetstream(), names.leases)
        owners: dict[str, str] = {}
        for site in SITES:
            try:
                entry = await kv.get(f"site.{site}")
            except Exception:
                continue
            if entry.value:
                owners[site] = str(orjson.loads(entry.value)["owner"])
        try:
            keys = await kv.keys()
        except Exception:  # no keys at all
            keys = []
        return owners, {k.removeprefix("worker.") for k in keys if k.startswith("worker.")}
    finally:
        await nc.close()


def _owners(names: BusNames) -> dict[str, str]:
    return asyncio.run(_leases(names))[0]


def test_two_workers_share_three_sites_and_a_killed_ones_are_taken_over(
        tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    paths = _write_sites(tmp_path)
    first, *more = paths.values()
    every_site = site_args(more)
    data = tmp_path / "data"
    procs: list[ServeProcess] = []
    try:
        with postgres_schema(data) as db:
            store = open_store(db, data)
            _, token = store.create_api_token("feeder", ["ingest"])

            def serve(role: str, name: str) -> ServeProcess:
                p = ServeProcess(first, data, db, names, role, tmp_path / f"{name}.log",
                                 *every_site)
                procs.append(p)
                return p.start()

            gateway = serve("gateway", "gateway")
            # Worker 1 alone takes every site; worker 2 then gets its share.
            w1 = serve("worker", "worker1")
            async def one_owner() -> bool:
                owners = (await _leases(names))[0]
                return set(owners) == set(SITES) and len(set(owners.values())) == 1

            assert asyncio.run(wait_for(one_owner, 30)), _owners(names)
            (id1,) = set(_owners(names).values())
            w2 = serve("worker", "worker2")
            async def two_workers() -> bool:
                return len((await _leases(names))[1]) == 2

            assert asyncio.run(wait_for(two_workers, 20))
            (id2,) = asyncio.run(_leases(names))[1] - {id1}

            async def split() -> bool:
                owners = (await _leases(names))[0]
                # Every site has one owner (a key holds one), and both workers own some.
                return set(owners) == set(SITES) and set(owners.values()) == {id1, id2}

            assert asyncio.run(wait_for(split, 40)), _owners(names)
            owners = _owners(names)
            print("split:", owners, "worker1:", id1, "worker2:", id2)
            counts = {w: list(owners.values()).count(w) for w in (id1, id2)}
            victim_id = max(counts, key=lambda w: counts[w])
            survivor_id = id2 if victim_id == id1 else id1
            victim = w1 if victim_id == id1 else w2
            orphans = sorted(s for s, o in owners.items() if o == victim_id)
            assert len(orphans) == 2  # three sites, two workers: two and one
            sites = {s: site_store(store, key_for_site(store, s)) for s in SITES}
            with httpx.Client(base_url=gateway.url, timeout=30,
                              headers={"Authorization": f"Bearer {token}"}) as client:
                killed = _stream(client, names, victim, survivor_id, orphans)
            _check(sites, paths, names, store, survivor_id, orphans, killed, tmp_path)
            store.close()
    finally:
        for p in procs:
            p.stop()
        asyncio.run(cleanup(NATS_URL, names))


def _post(client: httpx.Client, site: str, events: list[dict[str, Any]]) -> None:
    r = client.post(f"/api/v1/sites/{site}/events", json=events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": len(events), "duplicates": 0, "late": 0}


def _stream(client: httpx.Client, names: BusNames, victim: ServeProcess, survivor: str,
            orphans: list[str]) -> dict[str, Any]:
    """Send the plan to every site; kill the victim at KILL_AT_S; return the kill's figures."""
    start = time.monotonic()
    for site, (_, officer) in SITES.items():
        _post(client, site, [{"t": format_time(time.time_ns() // 1000), "kind": "duty",
                              "officer": officer, "on": True}])
    killed_at = taken_at = None
    killed_us = 0
    sent = dict.fromkeys(SITES, 1)
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
            killed_at, killed_us = time.monotonic(), time.time_ns() // 1000
        elif killed_at is not None and taken_at is None and set(
                _owners(names).values()) == {survivor}:
            taken_at = time.monotonic()
        x = 0.0 if at_gate else 80.0
        for site, (_, officer) in SITES.items():
            _post(client, site, [{"t": format_time(time.time_ns() // 1000), "kind": "fix",
                                  "officer": officer, "x": x, "y": 0.0, "accuracy_m": 5}])
            sent[site] += 1
        time.sleep(0.5)
    assert killed_at is not None
    if taken_at is None:  # not yet seen while sending: wait out the rest of the deadline
        left = killed_at + TAKEOVER_S - time.monotonic()
        async def taken() -> bool:
            return set((await _leases(names))[0].values()) == {survivor}

        if asyncio.run(wait_for(taken, max(left, 0.0))):
            taken_at = time.monotonic()
    owners = _owners(names)
    assert taken_at is not None and taken_at - killed_at <= TAKEOVER_S, owners
    assert set(owners) == set(SITES)
    print(f"sites {', '.join(orphans)} taken over {taken_at - killed_at:.2f} s after the kill")
    return {"killed_us": killed_us, "end_us": time.time_ns() // 1000, "sent": sent}


def _check(sites: dict[str, Store], paths: dict[str, Path], names: BusNames, store: Store,
           survivor: str, orphans: list[str], killed: dict[str, Any], tmp_path: Path) -> None:
    end = killed["end_us"]
    secret = checkpoint_secret(cast("SiteUnit", SimpleNamespace(store=store)))

    async def final_covers() -> dict[str, BusCover] | None:
        """Every site's last checkpoint, by the survivor, past the end of the fixes."""
        nc = await connect(NATS_URL)
        try:
            cps = Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints))
            out = {}
            for site in SITES:
                cp = await cps.load(site)
                if cp is None or cp.state is None or cp.owner != survivor:
                    return None
                cover = BusCover(load_site(paths[site]), secret=secret, state=cp.state)
                if cover.live.horizon <= end + US_PER_S:
                    return None
                out[site] = cover
            return out
        finally:
            await nc.close()

    assert asyncio.run(wait_for(final_covers, 30))
    covers = asyncio.run(final_covers())
    assert covers is not None
    ids: dict[str, set[str]] = {}
    for site, svc_store in sites.items():
        post, officer = SITES[site]
        # Every event stored once, and once in the site's stream.
        stored = svc_store.events_since(0, limit=10_000)
        assert len(stored) == killed["sent"][site]
        assert {e["officer"] for e in stored} == {officer}
        keys = sorted(row_key(r) for r in stored)
        assert len(set(keys)) == len(keys)
        published = events_of(asyncio.run(read_subject(names, site)))
        assert sorted(m.key or "" for m in published) == keys
        # The alerts equal a single-process replay of the stored on-time events.
        horizon = covers[site].live.horizon
        on_time = [_replayable(r) for r in stored if r["t_us"] < horizon and not r["late"]]
        (tmp_path / site).mkdir()
        replayed = replay_lapses(paths[site], on_time, horizon - 1, tmp_path / site)
        live = [lapse_record(lp) for lp in covers[site].live.lapses(include_open=True)]
        assert live == replayed, site
        alerted = {(lp["post"], lp["rule"], lp["start"]) for lp in replayed if lp["alert_at"]}
        assert len(alerted) == 2, (site, replayed)
        alerts = [a for a in svc_store.load_alerts() if a["kind"] == "lapse"]
        assert {(a["post"], a["rule"], format_time(a["lapse_start"])) for a in alerts} == alerted
        assert {a["post"] for a in alerts} == {post}  # this site's post only
        # Each raised once, and its first level sent once, in this site's chain.
        audit = svc_store.audit_entries(limit=100_000)
        raised = [e for e in audit if e.action == "alert.raised"
                  and e.subject.startswith("alert:lapse")]
        assert sorted(e.subject for e in raised) == sorted(f"alert:{a['id']}" for a in alerts)
        due = sorted(e.subject for e in audit if e.action == "alert.level-due.0")
        assert due == sorted(f"alert:{a['id']}" for a in alerts)
        # And so is every other alert of the site (notification failures, system alerts).
        every_raised = sorted(e.subject for e in audit if e.action == "alert.raised")
        assert every_raised == sorted(f"alert:{a['id']}" for a in svc_store.load_alerts())
        if site in orphans:  # one alert the victim's, the other the survivor's
            assert sorted(parse_time(e.at) > killed["killed_us"] for e in raised) == [
                False, True]
        # No dead-man alarm for the kill (one while the workers boot is the machine's load).
        assert not [a for a in svc_store.load_alerts() if a["rule"].startswith("deadman:")
                    and a["alert_at"] > killed["killed_us"]]
        ids[site] = {a["id"] for a in alerts}
    # No alert of one site at another.
    every = [i for s in ids.values() for i in s]
    assert len(every) == len(set(every)) == 2 * len(SITES)
