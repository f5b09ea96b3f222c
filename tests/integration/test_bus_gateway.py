"""Distributed mode: a gateway that dies after the commit, before the publish.

Two gateways (``create_app`` with ``bus_url``, role gateway) share one
PostgreSQL schema and one bus prefix. Gateway A commits a batch and then
cannot publish it (its publish fails, as when it dies between the two): the
client gets a 503 and sends the batch again, to gateway B. B's store says
"duplicate" for every row, and B publishes them all the same. A third send
(a client that lost B's answer) is dropped by the message ids. Then a worker
evaluates the site: each event is stored once, in the stream once, taken by
the evaluator once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from clusterkit import events_of, postgres_schema, read_subject
from natskit import NATS_URL, cleanup, need_nats, unique_names

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.storage import row_key
from serverkit import Kit, WallClock, base_settings, running_server, wait_until, write_site


def _batch(t0: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"t": format_time(t0), "kind": "duty", "officer": "A1",
                                     "on": True}]
    for i in range(1, 25):
        events.append({"t": format_time(t0 + i * 100_000), "kind": "fix", "officer": "A1",
                       "x": float(i), "y": 0.0, "accuracy_m": 5})
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

    a.svc.bus.log.publish = dies  # A commits, then cannot publish
    first = a.post_events(feeder, batch)
    assert first.status_code == 503, first.text
    assert a.svc.store.count_events() == len(batch)  # committed all the same
    assert not events_of(asyncio.run(read_subject(names, site_id)))

    again = b.post_events(feeder, batch)  # the client's retry, to another gateway
    assert again.status_code == 200, again.text
    assert again.json() == {"accepted": 0, "duplicates": len(batch), "late": 0}
    assert b.post_events(feeder, batch).status_code == 200  # B's answer was lost: once more

    stored = b.svc.store.events_since(0, limit=1000)
    assert len(stored) == len(batch)
    published = events_of(asyncio.run(read_subject(names, site_id)))
    keys = [m.key for m in published]
    assert sorted(keys) == sorted(row_key(r) for r in stored)  # each stored event once

    # A worker evaluates the site: each event taken once.
    worker_settings = base_settings(settings.site_path, settings.data_dir,
                                    db_url=settings.db_url, bus_url=NATS_URL,
                                    bus_prefix=names.prefix, role="worker")
    with running_server(worker_settings, WallClock()) as w:
        cluster = w.svc.bus.worker.worker

        def caught_up() -> bool:
            run = cluster.runs.get(site_id)
            return run is not None and run.seq >= published[-1].seq

        wait_until(caught_up, timeout_s=30, what="the worker to read the stream")
        assert cluster.runs[site_id].taken == len(batch)
