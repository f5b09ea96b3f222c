"""Distributed mode, the bus outbox: an event committed and never published is still evaluated.

An officer stands at the gate, then walks away for longer than the grace, then comes
back. The fix that starts the walk goes to a gateway that commits it and cannot
publish it:

1. a real `coverwatch serve --role gateway` that dies between its commit and its
   publish (``COVERWATCH_TEST_FAULT=exit-before-publish``: ``os._exit``);
2. a gateway whose NATS (a private ``nats-server`` of the test's) is SIGKILLed just
   before the request and restarted after it (the client got a 503);
3. a gateway whose PubAcks all come while the stream loses the messages (a JetStream
   leader that acknowledged and lost its leadership before replicating them:
   ``COVERWATCH_TEST_FAULT=acked-not-stored``); the client got a 200.

Either way the row is in PostgreSQL and no client sends it again. The site's owner
(a `coverwatch serve --role worker` process) finds it in the outbox, republishes it
and holds its watermark until then: the event is not late, the lapse starts at that
fix (not at the next one), the owner's lapses equal a replay of every stored event,
and the alert in PostgreSQL has the same start. The outbox is empty at the end.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from clusterkit import ServeProcess, postgres_schema
from clusterkit import replayable as _replayable
from natskit import NATS_URL, PrivateNats, cleanup, need_nats, unique_names, wait_for
from sqlalchemy import text
from test_live_equivalence import replay_lapses

from coverwatch.bus import BusNames, Checkpoints, connect, open_bucket
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.replay import lapse_record
from coverwatch.server.buscover import BusCover
from coverwatch.server.clusterworker import checkpoint_secret
from coverwatch.storage.base import make_engine
from serverkit import Caller, Kit, WallClock, base_settings, running_server, write_site

AWAY_S = 14.0  # longer than the site's grace (10 s)


async def _owner(url: str, names: BusNames, site: str) -> str | None:
    nc = await connect(url)
    try:
        kv = await open_bucket(nc.jetstream(), names.leases)
        entry = await kv.get(f"site.{site}")
        return str(orjson.loads(entry.value)["owner"]) if entry.value else None
    except Exception:
        return None
    finally:
        await nc.close()


def _fix(t_us: int, x: float) -> list[dict[str, Any]]:
    return [{"t": format_time(t_us), "kind": "fix", "officer": "A1", "x": x, "y": 0.0,
             "accuracy_m": 5}]


def _walk(gw: Kit, feeder: Caller, seconds: float, x: float) -> None:
    """Fixes every half second through the healthy gateway (a 503 in an outage is fine:
    the row is stored and the outbox has it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = gw.post_events(feeder, _fix(gw.clock(), x))
        assert r.status_code in (200, 503), r.text
        time.sleep(0.5)


def _outbox_rows(db: str) -> int:
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM bus_outbox")).scalar_one())
    finally:
        engine.dispose()


def _check(gw: Kit, url: str, names: BusNames, site_path: Path, lost_t: int, db: str,
           tmp_path: Path) -> None:
    end = gw.clock()
    store = gw.svc.store
    secret = checkpoint_secret(gw.svc)
    model = load_site(site_path)
    site = gw.svc.site.id

    async def final_cover() -> BusCover | None:
        nc = await connect(url)
        try:
            cp = await Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints)
                                   ).load(site)
        finally:
            await nc.close()
        if cp is None or cp.state is None:
            return None
        cover = BusCover(model, secret=secret, state=cp.state)
        return cover if cover.live.horizon > end + US_PER_S else None

    assert asyncio.run(wait_for(final_cover, 60))
    cover = asyncio.run(final_cover())
    assert cover is not None
    horizon = cover.live.horizon
    rows = [r for r in store.events_since(0, limit=10_000) if r["t_us"] < horizon]
    assert lost_t in {r["t_us"] for r in rows}  # stored, though never acknowledged
    assert not [r for r in rows if r["late"]]  # every stored event evaluated
    replayed = replay_lapses(site_path, [_replayable(r) for r in rows], horizon - 1, tmp_path)
    live = [lapse_record(lp) for lp in cover.live.lapses(include_open=True)]
    assert live == replayed
    # The alerted lapse starts at the lost fix (not at the next one).
    assert [lp["start"] for lp in replayed if lp["alert_at"]] == [format_time(lost_t)]
    alerts = [a for a in store.load_alerts() if a["kind"] == "lapse"]
    assert [a["lapse_start"] for a in alerts] == [lost_t]
    assert _outbox_rows(db) == 0


def test_a_gateway_dead_between_commit_and_publish(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site_path = write_site(tmp_path)
    data = tmp_path / "data"
    procs: list[ServeProcess] = []
    try:
        with postgres_schema(data) as db:
            settings = base_settings(site_path, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role="gateway")
            with running_server(settings, WallClock()) as gw:
                worker = ServeProcess(site_path, data, db, names, "worker",
                                      tmp_path / "worker.log")
                dying = ServeProcess(site_path, data, db, names, "gateway",
                                     tmp_path / "dying.log",
                                     env={"COVERWATCH_TEST_FAULT": "exit-before-publish"})
                procs += [worker, dying]
                worker.start()
                dying.start()
                site = gw.svc.site.id
                assert asyncio.run(wait_for(lambda: _owner(NATS_URL, names, site), 30))
                feeder = gw.api_token("feeder", "ingest")
                r = gw.post_events(feeder, [{"t": format_time(gw.clock()), "kind": "duty",
                                             "officer": "A1", "on": True}])
                assert r.status_code == 200, r.text
                _walk(gw, feeder, 4.0, 0.0)
                lost_t = gw.clock()
                try:  # the dying gateway commits, then exits before publishing
                    httpx.post(dying.url + "/api/v1/events", json=_fix(lost_t, 80.0),
                               headers=feeder.headers, timeout=30.0)
                    raise AssertionError("the gateway answered")
                except httpx.TransportError:
                    pass
                assert dying.proc is not None and dying.proc.wait(10) == 70
                _walk(gw, feeder, AWAY_S, 80.0)
                _walk(gw, feeder, 3.0, 0.0)
                _check(gw, NATS_URL, names, site_path, lost_t, db, tmp_path)
    finally:
        for p in procs:
            p.stop()
        asyncio.run(cleanup(NATS_URL, names))


def test_nats_dead_between_commit_and_publish(tmp_path: Path) -> None:
    nats = PrivateNats(tmp_path / "nats")
    nats.start()
    names = unique_names()
    site_path = write_site(tmp_path)
    data = tmp_path / "data"
    worker: ServeProcess | None = None
    try:
        with postgres_schema(data) as db:
            settings = base_settings(site_path, data, db_url=db, bus_url=nats.url,
                                     bus_prefix=names.prefix, role="gateway")
            with running_server(settings, WallClock()) as gw:
                worker = ServeProcess(site_path, data, db, names, "worker",
                                      tmp_path / "worker.log", bus_url=nats.url)
                worker.start()
                site = gw.svc.site.id
                assert asyncio.run(wait_for(lambda: _owner(nats.url, names, site), 30))
                feeder = gw.api_token("feeder", "ingest")
                r = gw.post_events(feeder, [{"t": format_time(gw.clock()), "kind": "duty",
                                             "officer": "A1", "on": True}])
                assert r.status_code == 200, r.text
                _walk(gw, feeder, 4.0, 0.0)
                assert nats.proc is not None
                nats.proc.kill()  # SIGKILL: NATS dies with the request on its way
                nats.proc.wait(10)
                nats.proc = None
                lost_t = gw.clock()
                r = gw.post_events(feeder, _fix(lost_t, 80.0))
                assert r.status_code == 503, r.text  # committed, never acknowledged
                nats.start()
                _walk(gw, feeder, AWAY_S, 80.0)
                _walk(gw, feeder, 3.0, 0.0)
                _check(gw, nats.url, names, site_path, lost_t, db, tmp_path)
    finally:
        if worker is not None:
            worker.stop()
        nats.stop()


def test_a_publish_acknowledged_and_lost_by_the_stream(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site_path = write_site(tmp_path)
    data = tmp_path / "data"
    procs: list[ServeProcess] = []
    try:
        with postgres_schema(data) as db:
            settings = base_settings(site_path, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role="gateway")
            with running_server(settings, WallClock()) as gw:
                worker = ServeProcess(site_path, data, db, names, "worker",
                                      tmp_path / "worker.log")
                lying = ServeProcess(site_path, data, db, names, "gateway",
                                     tmp_path / "lying.log",
                                     env={"COVERWATCH_TEST_FAULT": "acked-not-stored"})
                procs += [worker, lying]
                worker.start()
                lying.start()
                site = gw.svc.site.id
                assert asyncio.run(wait_for(lambda: _owner(NATS_URL, names, site), 30))
                feeder = gw.api_token("feeder", "ingest")
                r = gw.post_events(feeder, [{"t": format_time(gw.clock()), "kind": "duty",
                                             "officer": "A1", "on": True}])
                assert r.status_code == 200, r.text
                _walk(gw, feeder, 4.0, 0.0)
                lost_t = gw.clock()
                r = httpx.post(lying.url + "/api/v1/events", json=_fix(lost_t, 80.0),
                               headers=feeder.headers, timeout=30.0)
                assert r.status_code == 200, r.text  # acknowledged: stored, "published"
                _walk(gw, feeder, AWAY_S, 80.0)
                _walk(gw, feeder, 3.0, 0.0)
                _check(gw, NATS_URL, names, site_path, lost_t, db, tmp_path)
    finally:
        for p in procs:
            p.stop()
        asyncio.run(cleanup(NATS_URL, names))
