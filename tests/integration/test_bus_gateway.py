"""Distributed mode, the gateways: a retry after a gateway died is one event; an SOS is sent once.

1. Two gateways (``create_app`` with ``bus_url``, role gateway) share one
   PostgreSQL schema and one bus prefix. Gateway A commits a batch and then
   cannot publish it (as when it dies between the two): the client gets a 503
   and sends the batch again, to gateway B. B's store says "duplicate" for
   every row, and B publishes none of them (A's commit noted its group in the
   bus outbox), nor does a third send (a client that lost B's answer). A worker
   then finds the group in the outbox, publishes it as A's chunk would have been,
   and takes each event once.
2. A real `coverwatch serve --role gateway` dies after the PubAck of the first
   chunk of a committed batch; the retry to another node is one event each,
   in the store, in the stream and in the evaluation.
3. An SOS is escalated by the gateway that stored it, at once; another gateway
   and the site's worker learn of it from PostgreSQL and send nothing again.
4. A site no worker holds: the gateway's dead-man check raises a ``system``
   alert in PostgreSQL, once; a worker that takes the site resolves it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from clusterkit import ServeProcess, events_of, postgres_schema, read_subject
from natskit import NATS_URL, cleanup, need_nats, unique_names

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.sitefile import load_site
from coverwatch.storage import open_store, row_key
from coverwatch.storage.busoutbox import CHUNK_EVENTS
from serverkit import (
    Caller,
    Kit,
    WallClock,
    base_settings,
    running_server,
    wait_until,
    write_site,
)


def _batch(t0: int, n: int = 25) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"t": format_time(t0), "kind": "duty", "officer": "A1",
                                     "on": True}]
    for i in range(1, n):
        events.append({"t": format_time(t0 + i * 10_000), "kind": "fix", "officer": "A1",
                       "x": float(i % 50), "y": 0.0, "accuracy_m": 5})
    return events


def test_a_retry_to_another_gateway_is_one_event(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site = write_site(tmp_path)
    data = tmp_path / "data"
    try:
        with postgres_schema(data) as db:
            settings = base_settings(site, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role="gateway")
            with running_server(settings, WallClock()) as a, \
                    running_server(settings, WallClock()) as b:
                _scenario(a, b, settings, names)
    finally:
        asyncio.run(cleanup(NATS_URL, names))


def _scenario(a: Kit, b: Kit, settings: Any, names: Any) -> None:
    feeder = a.api_token("feeder", "ingest")  # the store is shared: valid at B too
    batch = _batch(a.clock() - 5 * US_PER_S)
    site_id = a.svc.site.id

    async def dies(*_: Any, **__: Any) -> Any:
        raise ConnectionResetError("gateway gone between commit and publish")

    a.svc.bus.log.publish = a.svc.bus.log.publish_events = dies  # type: ignore[method-assign]
    first = a.post_events(feeder, batch)  # A commits, then cannot publish
    assert first.status_code == 503, first.text
    assert a.svc.store.count_events() == len(batch)  # committed all the same
    assert not events_of(asyncio.run(read_subject(names, site_id)))

    again = b.post_events(feeder, batch)  # the client's retry, to another gateway
    assert again.status_code == 200, again.text
    assert again.json() == {"accepted": 0, "duplicates": len(batch), "late": 0}
    assert b.post_events(feeder, batch).status_code == 200  # B's answer was lost: once more

    stored = b.svc.store.events_since(0, limit=1000)
    assert len(stored) == len(batch)
    # The re-sent rows are not published again: the outbox's group carries them.
    assert not events_of(asyncio.run(read_subject(names, site_id)))

    # A worker evaluates the site: its relay publishes the group, each event taken once.
    worker_settings = base_settings(settings.site_path, settings.data_dir,
                                    db_url=settings.db_url, bus_url=NATS_URL,
                                    bus_prefix=names.prefix, role="worker")
    with running_server(worker_settings, WallClock()) as w:
        cluster = w.svc.bus.worker.worker

        def caught_up() -> bool:
            run = cluster.runs.get(site_id)
            return run is not None and run.taken >= len(batch)

        wait_until(caught_up, timeout_s=30, what="the worker to relay and read the group")
        published = events_of(asyncio.run(read_subject(names, site_id)))
        keys = [m.key for m in published]
        assert sorted(keys) == sorted(row_key(r) for r in stored)  # each stored event once
        assert len({m.seq for m in published}) == 1  # as A's one chunk
        assert cluster.runs[site_id].taken == len(batch)


def test_a_gateway_dead_mid_request(tmp_path: Path) -> None:
    """A real `coverwatch serve --role gateway` that dies between the PubAcks of a committed
    batch's chunks (``COVERWATCH_TEST_FAULT=exit-after-first-chunk``: ``os._exit``).

    The retry goes to a node of role ``all``, which evaluates too and publishes the rest
    from the bus outbox: each event once, in the store, in the stream and in the evaluation.
    """
    need_nats()
    names = unique_names()
    site = write_site(tmp_path)
    data = tmp_path / "data"
    gateway: ServeProcess | None = None
    try:
        with postgres_schema(data) as db:
            store = open_store(db, data)
            _, token = store.create_api_token("feeder", ["ingest"])
            headers = {"Authorization": f"Bearer {token}"}
            batch = _batch(time.time_ns() // 1000 - 60 * US_PER_S, 5000)
            gateway = ServeProcess(site, data, db, names, "gateway", tmp_path / "gateway.log",
                                   env={"COVERWATCH_TEST_FAULT": "exit-after-first-chunk"}
                                   ).start()
            site_id = load_site(site).id
            try:
                httpx.post(f"{gateway.url}/api/v1/events", json=batch, headers=headers,
                           timeout=60)
                raise AssertionError("the gateway answered")
            except httpx.TransportError:
                pass  # no answer: the client retries
            assert gateway.proc is not None and gateway.proc.wait(10) == 70
            assert store.count_events() == len(batch)
            before = events_of(asyncio.run(read_subject(names, site_id)))
            assert len(before) == CHUNK_EVENTS  # its first chunk, then it died

            settings = base_settings(site, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role="all")
            with running_server(settings, WallClock()) as b:
                again = b.post_events(Caller("feeder", headers=headers), batch)
                assert again.status_code == 200, again.text
                assert again.json()["duplicates"] == len(batch)
                cluster = b.svc.bus.worker.worker

                def caught_up() -> bool:
                    run = cluster.runs.get(site_id)
                    return run is not None and run.taken >= len(batch)

                wait_until(caught_up, timeout_s=60, what="the worker to relay the rest")
                published = events_of(asyncio.run(read_subject(names, site_id)))
                stored = store.events_since(0, limit=10_000)
                assert sorted(m.key or "" for m in published) == sorted(
                    row_key(r) for r in stored)
                assert cluster.runs[site_id].taken == len(batch)
            store.close()
    finally:
        if gateway is not None:
            gateway.stop()
        asyncio.run(cleanup(NATS_URL, names))


ESCALATION = """escalation:
  default:
    - after_s: 0
      notify: [supervisor]
    - after_s: 300
      notify: [duty-inspector]
"""


def test_an_sos_is_escalated_by_its_gateway_once(tmp_path: Path) -> None:
    """Other gateways and the site's worker learn of the SOS and send nothing again."""
    need_nats()
    names = unique_names()
    site = write_site(tmp_path, extra=ESCALATION)
    data = tmp_path / "data"
    try:
        with postgres_schema(data) as db:
            def settings(role: str) -> Any:
                return base_settings(site, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role=role, tick_s=0.05)

            with running_server(settings("gateway"), WallClock()) as a, \
                    running_server(settings("gateway"), WallClock()) as b, \
                    running_server(settings("worker"), WallClock()) as w:
                _, token = a.svc.store.create_device("phone-a1", "A1")
                r = a.post_events(Caller("phone-a1", headers={
                    "Authorization": f"Bearer {token}"}), [
                    {"t": format_time(a.clock()), "kind": "fix", "x": 1, "y": 2,
                     "alarm": "sos"}])
                assert r.status_code == 200, r.text
                (alert,) = [x for x in a.svc.store.load_alerts() if x["kind"] == "sos"]

                def actions() -> list[str]:
                    return [e.action for e in a.svc.store.audit_entries(0, 1000)
                            if e.subject == f"alert:{alert['id']}"
                            and e.action.startswith("alert.")]

                wait_until(lambda: len(actions()) == 3, what="both levels, at once")
                # Both other nodes have the alert, and have ticked with it since.
                for kit in (b, w):
                    wait_until(lambda k=kit: alert["id"] in k.svc.book
                               and k.svc.book.get(alert["id"]).escalated_level == 1,
                               what="the other nodes to learn of the SOS")
                    kit.tick()
                assert actions() == ["alert.raised", "alert.level-due.0", "alert.level-due.1"]
    finally:
        asyncio.run(cleanup(NATS_URL, names))


def test_a_site_nobody_evaluates_raises_one_system_alert(tmp_path: Path) -> None:
    """The dead-man check on a gateway: a `system` alert in PostgreSQL, resolved by an owner."""
    need_nats()
    names = unique_names()
    site = write_site(tmp_path)
    data = tmp_path / "data"
    try:
        with postgres_schema(data) as db:
            def settings(role: str) -> Any:
                return base_settings(site, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role=role)

            with running_server(settings("gateway"), WallClock()) as a:
                def deadman() -> list[dict[str, Any]]:
                    return [x for x in a.svc.store.load_alerts()
                            if x["kind"] == "system" and x["rule"] == "deadman:test-quay"]

                wait_until(deadman, timeout_s=40, what="the dead-man alert")
                with running_server(settings("worker"), WallClock()):
                    wait_until(lambda: all(x["state"] == "resolved" for x in deadman()),
                               timeout_s=40, what="the owner to resolve it")
                assert len(deadman()) == 1  # once per outage
    finally:
        asyncio.run(cleanup(NATS_URL, names))
