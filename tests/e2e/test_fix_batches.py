"""Batches of plain fixes go in as columns (issue 25, round 7), and only where nothing
differs from the row path: a bad record is named, a late fix, a group with a device's
upload or a transaction the store refuses take the rows, and nobody else's fixes are lost."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from coverwatch.domain.fixbatch import FixBatch
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.errors import StoreError
from coverwatch.formats.validation import plain_fix_batch
from coverwatch.server.handlers import ingest
from coverwatch.storage.eventrows import key_fixes
from coverwatch.storage.store import Store
from serverkit import FakeClock, Kit, base_settings, running_server, write_site


@pytest.fixture
def kit(tmp_path: Path) -> Any:
    site = write_site(tmp_path)
    with running_server(base_settings(site, tmp_path / "data"), FakeClock()) as k:
        yield k


def _fixes(kit: Kit, officers: list[str], dt_s: float = 0.0) -> list[dict[str, Any]]:
    t = format_time(kit.clock() + int(dt_s * US_PER_S))
    return [{"t": t, "kind": "fix", "officer": o, "x": 10.0 + i, "y": 20.0, "accuracy_m": 4.0}
            for i, o in enumerate(officers)]


def _batch(kit: Kit, records: list[dict[str, Any]]) -> FixBatch:
    batch = plain_fix_batch(records, now_us=kit.clock(), max_future_us=5 * US_PER_S)
    assert batch is not None
    key_fixes(batch)
    return batch


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches stored as columns."""
    sizes: list[int] = []
    real = Store.append_fixes

    def counting(self: Store, batch: FixBatch, received: int) -> Any:
        sizes.append(len(batch))
        return real(self, batch, received)

    monkeypatch.setattr(Store, "append_fixes", counting)
    return sizes


def test_a_large_batch_is_stored_as_columns_once(kit: Kit, counted: list[int]) -> None:
    caller = kit.api_token("gw", "ingest")
    records = _fixes(kit, [f"G{i}" for i in range(200)])
    r = kit.post_events(caller, records)
    assert r.status_code == 200 and r.json() == {"accepted": 200, "duplicates": 0, "late": 0}
    assert counted == [200]
    again = kit.post_events(caller, records[:50] + _fixes(kit, ["N1"], dt_s=-1))
    assert again.json() == {"accepted": 1, "duplicates": 50, "late": 0}
    stored = kit.svc.store.events_since(0)
    assert len(stored) == 201 and stored[0]["raw"] == records[0]
    assert stored[0]["accuracy_source"] == "reported" and not stored[0]["late"]
    assert kit.svc.live.positions()["G7"].x == 17.0


def test_one_bad_record_is_named_and_nothing_of_the_batch_is_stored(
        kit: Kit, counted: list[int]) -> None:
    caller = kit.api_token("gw", "ingest")
    records = _fixes(kit, [f"G{i}" for i in range(200)])
    records[137]["y"] = "north"
    r = kit.post_events(caller, records)
    assert r.status_code == 422
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(137, "y")]
    assert kit.svc.store.events_since(0) == [] and counted == []


def test_batches_committed_together_are_one_column_commit(kit: Kit, counted: list[int]) -> None:
    svc = kit.svc
    a, b = _batch(kit, _fixes(kit, ["A1", "A2"])), _batch(kit, _fixes(kit, ["B1", "A1"]))

    async def together() -> list[Any]:
        return list(await asyncio.gather(ingest(svc, a, source="http"),
                                         ingest(svc, b, source="http")))

    results = kit.call(together)
    assert [(r.accepted, r.duplicates, r.late) for r in results] == [(2, 0, 0), (2, 0, 0)]
    assert counted == [4]
    assert [e["officer"] for e in svc.store.events_since(0)] == ["A1", "A2", "B1", "A1"]


def test_a_batch_grouped_with_a_device_upload_takes_the_row_path(
        kit: Kit, counted: list[int]) -> None:
    svc = kit.svc
    batch = _batch(kit, _fixes(kit, ["A1", "A2"]))
    row = {"kind": "fix", "t_us": kit.clock(), "officer": "D1", "x": 1.0, "y": 2.0,
           "accuracy": 5.0, "post": None, "flag": None, "on": None, "open": None,
           "capabilities": None, "accuracy_source": "reported", "raw": {"lat": 1}}

    async def together() -> list[Any]:
        return list(await asyncio.gather(ingest(svc, batch, source="http"),
                                         ingest(svc, [row], source="osmand", device="p-d1")))

    results = kit.call(together)
    assert [r.accepted for r in results] == [2, 1] and counted == []
    assert sorted(e["officer"] for e in svc.store.events_since(0)) == ["A1", "A2", "D1"]


def test_late_fixes_in_a_batch_are_counted_late(kit: Kit, counted: list[int]) -> None:
    caller = kit.api_token("gw", "ingest")
    kit.advance(30)
    r = kit.post_events(caller, _fixes(kit, [f"L{i}" for i in range(100)], dt_s=-20))
    assert r.json() == {"accepted": 100, "duplicates": 0, "late": 100}
    assert counted == [] and all(e["late"] for e in kit.svc.store.events_since(0))


def test_a_refused_batch_fails_its_sender_only(
        kit: Kit, counted: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    svc = kit.svc
    real = Store.append_events

    def refuse(self: Store, batch: FixBatch, received: int) -> Any:
        raise StoreError("refused (test)") from ValueError("refused")

    def picky(self: Store, rows: Any, **kwargs: Any) -> Any:
        if any(r.get("officer") == "POISON" for r in rows):
            raise StoreError("refused (test)") from ValueError("refused")
        return real(self, rows, **kwargs)

    monkeypatch.setattr(Store, "append_fixes", refuse)
    monkeypatch.setattr(Store, "append_events", picky)
    bad, good = _batch(kit, _fixes(kit, ["POISON"])), _batch(kit, _fixes(kit, ["C1", "C2"]))

    async def together() -> list[Any]:
        return list(await asyncio.gather(ingest(svc, bad, source="http"),
                                         ingest(svc, good, source="http"),
                                         return_exceptions=True))

    poisoned, other = kit.call(together)
    assert isinstance(poisoned, StoreError) and other.accepted == 2
    assert [e["officer"] for e in svc.store.events_since(0)] == ["C1", "C2"]
    assert svc.health.store_ok


def test_a_batch_not_yet_keyed_is_keyed_at_its_commit(kit: Kit, counted: list[int]) -> None:
    records = _fixes(kit, ["K1", "K2"])
    batch = plain_fix_batch(records, now_us=kit.clock(), max_future_us=5 * US_PER_S)
    assert batch is not None
    result = kit.call(partial(ingest, kit.svc, batch, source="http"))
    assert (result.accepted, counted) == (2, [2])
    assert [e["raw"] for e in kit.svc.store.events_since(0)] == records
