"""The gateway publishes a commit group as chunks, and the owner's relay rebuilds them.

On the machine's NATS, with a store whose commits note their group in the bus outbox (as
``coverwatch serve --bus`` wires it): a commit of five events goes as three messages (chunks
of two here), ``g:<site>:<first id>:<chunk>``; a re-sent request publishes nothing. The
relay of an owner that took the site over rebuilds the same messages, which JetStream drops
as duplicates at the sequences the stream holds them: the new owner learns there that a
previous owner evaluated them. A group whose gateway died between commit and publish is
published by the relay; the gateway's late copy is dropped; each event is in the stream once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from natskit import NATS_URL, cleanup, need_nats, unique_names
from sqlalchemy import func, select, update

from coverwatch.bus import BusNames, EventLog, connect
from coverwatch.bus.log import Delivered
from coverwatch.server.cluster import _outbox_hook
from coverwatch.server.clusterworker import RELAY_AFTER_S, ClusterWorker
from coverwatch.server.gateway import BusHooks
from coverwatch.storage import busoutbox, open_store
from coverwatch.storage.base import now_us
from coverwatch.storage.tables import bus_outbox

SITE = "north-dock"


def _rows(ts: list[int]) -> list[dict[str, Any]]:
    return [{"kind": "fix", "t_us": t, "officer": "A1", "x": float(t), "y": 0.0,
             "accuracy_m": 5.0, "source": "test"} for t in ts]


async def _stream(js: Any, names: BusNames) -> list[tuple[str, list[str]]]:
    """The site's messages: (message id, event keys), in stream order (seq 1 on)."""
    info = await js.stream_info(names.stream)
    out = []
    for seq in range(1, info.state.last_seq + 1):
        msg = await js.get_msg(names.stream, seq)
        headers = msg.headers or {}
        keys = [str(k) for k, _ in orjson.loads(msg.data)] \
            if headers.get("Coverwatch-Kind") == "events" else [headers.get("Nats-Msg-Id")]
        out.append((str(headers.get("Nats-Msg-Id")), keys))
    return out


def _outbox(store: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(bus_outbox)).scalar_one())


def _age(store: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(bus_outbox).values(
            created_us=now_us() - int((RELAY_AFTER_S + 1) * 1e6)))


def _relay(log: EventLog, store: Any, consumed: int) -> ClusterWorker:
    cw = object.__new__(ClusterWorker)  # the relay alone: no leases
    cw.engine = store.engine
    cw.relayed = 0
    cw.sites = {SITE: SimpleNamespace(store=store)}  # type: ignore[assignment]
    run = SimpleNamespace(cp=SimpleNamespace(seq=consumed), seq=consumed)
    cw.worker = SimpleNamespace(log=log, runs={SITE: run})  # type: ignore[assignment]
    return cw


def test_chunks_from_the_gateway_and_the_same_chunks_from_the_relay(
        tmp_path: Path, monkeypatch: Any) -> None:
    need_nats()
    monkeypatch.setattr(busoutbox, "CHUNK_EVENTS", 2)
    names = unique_names()
    store = open_store(None, tmp_path / "data", site=SITE)

    async def main() -> None:
        nc = await connect(NATS_URL)
        js = nc.jetstream()
        log = EventLog(js, names)
        await log.ensure()
        hooks = BusHooks(SITE, lambda: None, store, None, None, now_us, log,  # type: ignore[arg-type]
                         "gateway")
        store.after_append = _outbox_hook(store, hooks)

        # 1. One commit of five: three messages, one per chunk of its own ids.
        rows = _rows([1_000_000 * t for t in range(1, 6)])
        result = store.append_events(rows)
        await hooks.publish(rows, result.ids)
        first = min(result.ids)
        keys = [str(r["key"]) for r in store.events_since(0)]
        assert await _stream(js, names) == [
            (f"g:{SITE}:{first}:0", keys[0:2]), (f"g:{SITE}:{first}:1", keys[2:4]),
            (f"g:{SITE}:{first}:2", keys[4:5])]
        # A re-sent request stores nothing and publishes nothing.
        again = store.append_events(_rows([1_000_000, 2_000_000]))
        await hooks.publish(_rows([1_000_000, 2_000_000]), again.ids)
        assert len(await _stream(js, names)) == 3

        # 2. A new owner (checkpoint at seq 3, nothing delivered by its own follower)
        # relays the group: the same three messages, dropped as duplicates at the
        # sequences the stream holds them, where a previous owner evaluated them.
        _age(store)
        log.delivered[SITE] = Delivered(3, {})
        cw = _relay(log, store, 3)
        assert await cw._relay([SITE]) == {SITE: 1_000_000}
        assert cw.relayed == 0 and len(await _stream(js, names)) == 3
        assert log.delivered[SITE].keys == {keys[0]: 1, keys[1]: 1, keys[2]: 2,
                                            keys[3]: 2, keys[4]: 3}
        assert await cw._relay([SITE]) == {} and _outbox(store) == 0

        # 3. A gateway dead between commit and publish: the relay publishes the chunks;
        # the gateway's late copy (it was only paused) is dropped; each key once.
        lost = _rows([1_000_000 * t for t in range(6, 9)])
        got = store.append_events(lost)
        noted, hooks.noted = hooks.noted, []  # the gateway holds them, unpublished
        _age(store)
        assert await cw._relay([SITE]) == {SITE: 6_000_000}
        assert cw.relayed == 3
        hooks.noted = noted
        await hooks.publish(lost, got.ids)
        stream = await _stream(js, names)
        new = min(got.ids)
        assert [m for m, _ in stream[3:]] == [f"g:{SITE}:{new}:0", f"g:{SITE}:{new}:1"]
        every = [k for _, ks in stream for k in ks]
        assert sorted(every) == sorted(set(every)) and len(every) == 8
        # Delivered to the owner's follower and checkpointed: forgotten.
        for seq, (_, ks) in enumerate(stream[3:], start=4):
            log.delivered[SITE].keys.update((k, seq) for k in ks)
        cw.worker.runs[SITE].cp.seq = cw.worker.runs[SITE].seq = len(stream)
        assert await cw._relay([SITE]) == {} and _outbox(store) == 0
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        asyncio.run(cleanup(NATS_URL, names))
