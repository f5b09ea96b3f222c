"""The bus outbox's relay on a site's owner, against a store and a scripted stream.

A commit group leaves the outbox only once the owner's own follower delivered every
event of it and its checkpoint covers them, whatever the PubAcks said; an event the
stream calls a duplicate at a sequence the owner's follower has passed without
delivering it was acknowledged and lost (or the replica read differs): it goes again
under a fresh message id.
(The real gateway, worker and NATS: test_bus_outbox.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from coverwatch.bus.log import Delivered, Published
from coverwatch.server.clusterworker import RELAY_AFTER_S, ClusterWorker
from coverwatch.storage import busoutbox, open_store
from coverwatch.storage.base import now_us
from coverwatch.storage.busoutbox import note_group
from coverwatch.storage.tables import bus_outbox

SITE = "north-dock"


@dataclass
class ScriptedLog:
    """The event log as the relay sees it: PubAcks and messages as the test says."""

    acks: dict[str, tuple[int, bool]]  # key -> (seq, duplicate) of a publish under its key
    at: dict[int, str]  # the stream: seq -> key
    delivered: dict[str, Delivered] = field(default_factory=dict)
    sent: list[tuple[list[str], str | None]] = field(default_factory=list)
    next_seq: int = 100

    async def publish(self, site: str, events: Sequence[tuple[str, Mapping[str, Any]]], *,
                      timeout: float = 5.0, fresh: str | None = None) -> list[Published]:
        self.sent.append(([k for k, _ in events], fresh))
        out = []
        for key, _ in events:
            if fresh is None and key in self.acks:
                seq, dup = self.acks[key]
            else:
                self.next_seq += 1
                seq, dup = self.next_seq, False
                self.at[seq] = key
            out.append(Published(key, seq, dup))
        return out

    async def publish_events(self, site: str, events: Sequence[tuple[str, Mapping[str, Any]]],
                             msg_id: str, *, timeout: float = 5.0, fresh: str | None = None
                             ) -> Published:
        self.sent.append(([msg_id, *(k for k, _ in events)], fresh))
        if fresh is None and msg_id in self.acks:
            seq, dup = self.acks[msg_id]
        else:
            self.next_seq += 1
            seq, dup = self.next_seq, False
            self.at[seq] = msg_id
        return Published(msg_id, seq, dup)

    async def key_at(self, seq: int) -> str | None:
        return self.at.get(seq)


def _worker(tmp_path: Path, log: ScriptedLog, cp_seq: int, consumed: int
            ) -> tuple[ClusterWorker, Any]:
    store = open_store(None, tmp_path / "data", site=SITE)
    cw = object.__new__(ClusterWorker)  # the relay alone: no NATS, no leases
    cw.engine = store.engine
    cw.relayed = 0
    cw.sites = {SITE: SimpleNamespace(store=store)}  # type: ignore[assignment]
    run = SimpleNamespace(cp=SimpleNamespace(seq=cp_seq), seq=consumed)
    cw.worker = SimpleNamespace(log=log, runs={SITE: run})  # type: ignore[assignment]
    return cw, store


def _commit(store: Any, keys_t: list[int], created_us: int, *, before_0019: bool = False
            ) -> list[str]:
    rows = [{"kind": "fix", "t_us": t, "officer": "A1", "x": 0.0, "y": 0.0, "accuracy_m": 5.0,
             "source": "test"} for t in keys_t]
    result = store.append_events(rows)
    with store.engine.begin() as conn:
        note_group(conn, store.site, [(i, "") for i in result.ids], min(keys_t))
        # A group noted before 0019 has no ids: its events go one by one under their keys.
        conn.execute(bus_outbox.update().values(
            created_us=created_us, **({"ids": None} if before_0019 else {})))
    return [str(r["key"]) for r in store.events_since(0, limit=100)]


def _outbox(store: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(bus_outbox)).scalar_one())


def test_an_acknowledged_group_stays_until_the_owner_has_evaluated_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Young for the whole test, however slowly a loaded machine runs it: on its way.
    monkeypatch.setattr("coverwatch.server.clusterworker.RELAY_AFTER_S", 3600.0)
    log = ScriptedLog({}, {})
    cw, store = _worker(tmp_path, log, cp_seq=10, consumed=10)
    keys = _commit(store, [1_000_000, 2_000_000], now_us())
    log.delivered[SITE] = Delivered(10, {})
    caps = asyncio.run(cw._relay([SITE]))
    assert caps == {SITE: 1_000_000}  # not delivered: the watermark waits for it
    assert _outbox(store) == 1 and log.sent == []
    log.delivered[SITE].keys.update({keys[0]: 11, keys[1]: 12})
    cw.worker.runs[SITE].seq = 12
    assert asyncio.run(cw._relay([SITE])) == {}  # delivered: the watermark may pass
    assert _outbox(store) == 1  # the checkpoint (seq 10) does not cover them yet
    cw.worker.runs[SITE].cp.seq = 12
    asyncio.run(cw._relay([SITE]))
    assert _outbox(store) == 0
    assert log.delivered[SITE].keys == {}  # forgotten with their group


def test_an_event_acknowledged_then_lost_goes_again_under_a_fresh_id(tmp_path: Path) -> None:
    old = now_us() - int((RELAY_AFTER_S + 1) * 1e6)
    log = ScriptedLog({}, {})
    cw, store = _worker(tmp_path, log, cp_seq=8, consumed=9)
    a, b, c = _commit(store, [1_000_000, 2_000_000, 3_000_000], old, before_0019=True)
    # a: a duplicate at seq 3 (before this owner's start, seq 5), where the stream holds it;
    # b: a duplicate at seq 9, which this owner's follower passed without delivering it
    #    (the leader holds it, the replica read did not: it goes again, fresh);
    # c: not a duplicate: appended now.
    log.acks = {a: (3, True), b: (9, True)}
    log.at = {3: a, 9: b}
    log.delivered[SITE] = Delivered(5, {})
    caps = asyncio.run(cw._relay([SITE]))
    assert caps == {SITE: 1_000_000}
    assert log.sent[0] == ([a, b, c], None)
    assert len(log.sent) == 2 and log.sent[1][0] == [b] and log.sent[1][1] is not None
    assert log.delivered[SITE].keys == {a: 3}  # evaluated before this owner started
    assert cw.relayed == 2  # c, and b again
    assert _outbox(store) == 1  # until b and c are delivered and checkpointed


def test_a_group_goes_again_as_the_gateways_chunks(tmp_path: Path, monkeypatch: Any) -> None:
    """The relay rebuilds the gateway's messages of a group: the same chunks under the same
    message ids (so JetStream keeps one of two copies); a chunk partly seen goes key by key."""
    monkeypatch.setattr(busoutbox, "CHUNK_EVENTS", 2)
    old = now_us() - int((RELAY_AFTER_S + 1) * 1e6)
    log = ScriptedLog({}, {})
    cw, store = _worker(tmp_path, log, cp_seq=8, consumed=9)
    k = _commit(store, [t * 1_000_000 for t in range(1, 10)], old)
    first = min(int(r["id"]) for r in store.events_since(0, limit=100))
    ids = [f"g:{SITE}:{first}:{n}" for n in range(5)]
    # chunk 0 (k0, k1): a duplicate at seq 3, before this owner's start, where the stream
    #   holds that very message: a previous owner evaluated it (a takeover);
    # chunk 1 (k2, k3): a duplicate at seq 9, passed by this owner's follower without
    #   delivering it: acknowledged and lost, it goes again under a fresh id;
    # chunk 2 (k4, k5): k4 delivered (an older gateway's single message), k5 goes alone;
    # chunk 3 (k6, k7): never published (the gateway died): appended now;
    # chunk 4 (k8): a duplicate not consumed yet (seq 12 > 9): on its way.
    log.acks = {ids[0]: (3, True), ids[1]: (9, True), ids[4]: (12, True)}
    log.at = {3: ids[0], 9: ids[1], 12: ids[4]}
    log.delivered[SITE] = Delivered(5, {k[4]: 7})
    caps = asyncio.run(cw._relay([SITE]))
    assert caps == {SITE: 1_000_000}
    assert log.sent[0] == ([k[5]], None)  # the partly seen chunk's missing key, alone
    chunks_sent = sorted(m for m, fresh in log.sent[1:] if fresh is None)
    assert chunks_sent == [[ids[0], k[0], k[1]], [ids[1], k[2], k[3]],
                           [ids[3], k[6], k[7]], [ids[4], k[8]]]
    again = [(m, fresh) for m, fresh in log.sent if fresh is not None]
    assert len(again) == 1 and again[0][0] == [ids[1], k[2], k[3]]
    # The takeover's chunk counts as delivered at its sequence; the others are to come.
    assert log.delivered[SITE].keys == {k[0]: 3, k[1]: 3, k[4]: 7}
    assert cw.relayed == 1 + 2 + 2  # k5, chunk 3, and chunk 1 again
    assert _outbox(store) == 1
