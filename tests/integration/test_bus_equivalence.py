"""Distributed mode gives the single process's answers: the same events, the same late
events, the same alerts.

The same requests go, in real time, to one `coverwatch serve` (SQLite, its own
ticker) and to a cluster (a gateway on PostgreSQL and NATS, and a
`coverwatch serve --role worker` process). Two officers' phones upload through the
Traccar JSON protocol: A2's at once, A1's in bursts every few seconds (the last
seconds of fixes, shuffled, and every other burst sent twice). A1 walks away from
the gate for longer than the grace and comes back; a fix half a minute old arrives
now and then. The single process holds its watermark for A1's bursts (the device
watermark, up to ``max_lateness_s``); the workers must do the same, not cut at
a fixed lateness. At the end both have flagged exactly the same events late and
raised exactly the same alerts, and the owner's lapses equal a replay of the
cluster's stored on-time events.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterkit import ServeProcess, postgres_schema
from clusterkit import replayable as _replayable
from natskit import NATS_URL, cleanup, need_nats, unique_names, wait_for
from test_bus_outbox import _owner
from test_live_equivalence import replay_lapses

from coverwatch.bus import BusNames, Checkpoints, connect, open_bucket
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.replay import lapse_record
from coverwatch.server.buscover import BusCover
from coverwatch.server.clusterworker import checkpoint_secret
from serverkit import Kit, WallClock, base_settings, running_server, wait_until, write_site

LAT, LON = 51.5, -0.12  # the test site's origin: its gate
AWAY_LON = -0.12 + 80 / 69_300  # 80 m east: out of the gate's 25 m
BURST_S = 4.0
SHIFT_S = 36.0
AWAY = (10.0, 24.0)  # A1 away from the gate (seconds into the shift): longer than the grace


def _location(t_us: int, lon: float) -> dict[str, Any]:
    return {"timestamp": format_time(t_us), "coords": {"latitude": LAT, "longitude": lon,
                                                       "accuracy": 5.0}}


class World:
    """One deployment under test: where to send, with its own device tokens."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.feeder = kit.api_token("feeder", "ingest")
        self.tokens: dict[str, str] = {}
        for name, officer in (("phone-a1", "A1"), ("phone-a2", "A2")):
            _, self.tokens[name] = kit.svc.store.create_device(name, officer)

    def upload(self, device: str, locations: list[dict[str, Any]]) -> None:
        r = self.kit.client.post("/osmand", json={"device_id": self.tokens[device],
                                                  "location": locations})
        assert r.status_code == 200, r.text

    def events(self, events: list[dict[str, Any]]) -> None:
        r = self.kit.post_events(self.feeder, events)
        assert r.status_code == 200, r.text


def _drive(worlds: list[World], clock: WallClock, seed: int) -> int:
    """The shift, sent alike to every world; returns its end (µs)."""
    rng = random.Random(seed)
    start = clock()
    for w in worlds:
        w.events([{"t": format_time(start), "kind": "duty", "officer": o, "on": True}
                  for o in ("A1", "A2")])
    for w in worlds:  # A1's phone says hello at once: from now on it is a device uploading
        w.upload("phone-a1", [_location(start, LON)])
    held: list[dict[str, Any]] = []  # A1's fixes not yet uploaded
    last_burst = time.monotonic()
    bursts = 0
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < SHIFT_S:
        now = clock()
        away = AWAY[0] <= elapsed < AWAY[1]
        held.append(_location(now, AWAY_LON if away else LON))
        # A2 left the gate at once; its phone reports promptly.
        for w in worlds:
            w.upload("phone-a2", [_location(now, AWAY_LON)])
        if time.monotonic() - last_burst >= BURST_S:
            burst, held = held, []
            rng.shuffle(burst)
            bursts += 1
            for w in worlds:
                w.upload("phone-a1", burst)
                if bursts % 2:
                    w.upload("phone-a1", burst)  # the reply was lost: sent again
            last_burst = time.monotonic()
        if rng.random() < 0.15:  # a fix from a phone that was offline: late everywhere
            old = _location(now - 30 * US_PER_S, AWAY_LON)
            for w in worlds:
                w.upload("phone-a2", [old])
        time.sleep(1.0)
    for w in worlds:
        if held:
            w.upload("phone-a1", held)
    return clock()


def _late(kit: Kit) -> list[tuple[str, str, int]]:
    rows = kit.svc.store.events_since(0, limit=100_000)
    return sorted((r["kind"], r["officer"], r["t_us"]) for r in rows if r["late"])


def _show(cluster: list[tuple[str, str, int]], single: list[tuple[str, str, int]],
          end: int) -> str:
    def ago(rows: list[tuple[str, str, int]]) -> list[tuple[str, float]]:
        return [(o, round((end - t) / 1e6, 2)) for _, o, t in rows]

    return f"late, seconds before the end: cluster {ago(cluster)}, single {ago(single)}"


def _alerts(kit: Kit) -> list[tuple[str, str, int]]:
    return sorted((a["post"], a["rule"], a["lapse_start"])
                  for a in kit.svc.store.load_alerts() if a["kind"] == "lapse")


def test_one_process_and_the_cluster_agree(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site_path = write_site(tmp_path)
    worker: ServeProcess | None = None
    clock = WallClock()
    try:
        with postgres_schema(tmp_path / "data") as db:
            single_settings = replace(base_settings(site_path, tmp_path / "single"),
                                      tick_s=0.5)
            cluster_settings = base_settings(site_path, tmp_path / "data", db_url=db,
                                             bus_url=NATS_URL, bus_prefix=names.prefix,
                                             role="gateway")
            with running_server(single_settings, clock) as single, \
                    running_server(cluster_settings, clock) as gateway:
                worker = ServeProcess(site_path, tmp_path / "data", db, names, "worker",
                                      tmp_path / "worker.log").start()
                site = gateway.svc.site.id
                assert asyncio.run(wait_for(lambda: _owner(NATS_URL, names, site), 30))
                worlds = [World(single), World(gateway)]
                end = _drive(worlds, clock, seed=5)
                wait_until(lambda: single.svc.live.horizon > end + US_PER_S, timeout_s=60,
                           what="the single process's horizon to pass the end")
                cover = _final_cover(gateway, names, site_path, end)
                cluster_late, single_late = _late(gateway), _late(single)
                assert cluster_late == single_late, _show(cluster_late, single_late, end)
                # The half-minute-old fixes were late; none of A1's bursts was.
                assert cluster_late
                assert not [x for x in cluster_late if x[1] == "A1"]
                assert _alerts(gateway) == _alerts(single)
                assert len(_alerts(single)) == 1  # A1's walk, past the grace
                _same_as_replay(gateway, cover, site_path, tmp_path)
    finally:
        if worker is not None:
            worker.stop()
        asyncio.run(cleanup(NATS_URL, names))


def _final_cover(gateway: Kit, names: BusNames, site_path: Path, end: int) -> BusCover:
    secret = checkpoint_secret(gateway.svc)
    model = load_site(site_path)

    async def final() -> BusCover | None:
        nc = await connect(NATS_URL)
        try:
            cp = await Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints)
                                   ).load(gateway.svc.site.id)
        finally:
            await nc.close()
        if cp is None or cp.state is None:
            return None
        cover = BusCover(model, secret=secret, state=cp.state)
        return cover if cover.live.horizon > end + US_PER_S else None

    assert asyncio.run(wait_for(final, 60))
    cover = asyncio.run(final())
    assert cover is not None
    return cover


def _same_as_replay(gateway: Kit, cover: BusCover, site_path: Path, tmp_path: Path) -> None:
    horizon = cover.live.horizon
    rows = [r for r in gateway.svc.store.events_since(0, limit=100_000)
            if r["t_us"] < horizon and not r["late"]]
    replayed = replay_lapses(site_path, [_replayable(r) for r in rows], horizon - 1, tmp_path)
    assert [lapse_record(lp) for lp in cover.live.lapses(include_open=True)] == replayed

