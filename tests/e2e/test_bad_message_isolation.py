"""One bad message never fails another sender's (issue 19, F1).

A device event nested 300 deep (an OsmAnd ``location`` that nests, a batch-API
``alarm`` event with a deep extra field) used to fail its whole group commit:
every upload committed with it, SOS included, got a 500. Now each record is
checked before it joins a group, a group that still fails is retried request by
request, and ingestion that keeps failing flips /readyz and raises a system alert.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.errors import StoreError
from coverwatch.formats.validation import InvalidEvents
from coverwatch.server import watchdog
from coverwatch.server.handlers import ingest
from coverwatch.storage.store import Store
from serverkit import FakeClock, Kit, base_settings, running_server, write_site

ESCALATION = """escalation:
  default:
    - after_s: 0
      notify: [supervisor]
"""


def _deep(n: int = 300) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(n):
        value = {"a": value}
    return value


@pytest.fixture
def kit(tmp_path: Path) -> Any:
    site = write_site(tmp_path, extra=ESCALATION)
    with running_server(base_settings(site, tmp_path / "data"), FakeClock()) as k:
        yield k


def _fix_row(kit: Kit, officer: str, dt_s: float = 0.0, raw: Any = None) -> dict[str, Any]:
    t = kit.clock() + int(dt_s * US_PER_S)
    return {"kind": "fix", "t_us": t, "officer": officer, "x": 1.0, "y": 2.0, "accuracy": 5.0,
            "post": None, "flag": None, "on": None, "open": None, "capabilities": None,
            "accuracy_source": "reported",
            "raw": raw if raw is not None else {"t": format_time(t), "officer": officer}}


def _sos(kit: Kit, device: str, officer: str, raw: Any = None) -> dict[str, Any]:
    return {"device": device, "officer": officer, "t_us": kit.clock(), "alarm": "sos",
            "used": False, "battery": None, "charging": None, "reason": None,
            "raw": raw if raw is not None else {"alarm": "sos"}}


def test_a_deep_alarm_event_is_a_422_for_its_sender_only(kit: Kit) -> None:
    _, token = kit.svc.store.create_device("radio-a1", "A1")
    headers = {"Authorization": f"Bearer {token}"}
    bad = {"t": kit.clock.iso(), "kind": "alarm", "alarm": "sos", "extra": _deep()}
    r = kit.client.post("/api/v1/events", headers=headers, json=[bad])
    assert r.status_code == 422, r.text
    assert "nest more than 16 deep" in r.json()["errors"][0]["message"]
    r = kit.client.post("/api/v1/events", headers=headers,
                        json=[{"t": kit.clock.iso(), "kind": "alarm", "alarm": "sos"}])
    assert r.status_code == 200, r.text


def test_an_osmand_location_nested_300_deep_still_counts(kit: Kit) -> None:
    _, token = kit.svc.store.create_device("phone-a1", "A1")
    body = {"device_id": token, "location": {
        "timestamp": format_time(kit.clock()),
        "coords": {"latitude": 51.5001, "longitude": -0.12, "accuracy": 8.0},
        "extras": {"alarm": "sos", "junk": _deep()}}}
    r = kit.client.post("/osmand", json=body)
    assert r.status_code == 200, r.text
    (fix,) = kit.svc.store.events_since(0)
    assert "not kept" in fix["raw"]["not_kept"] and "16 deep" in fix["raw"]["not_kept"]
    (report,) = kit.svc.store.device_reports("phone-a1")
    assert report["alarm"] == "sos" and "not_kept" in report["raw"]
    assert any(a.kind == "sos" for a in kit.svc.book.alerts())


def test_deep_records_in_the_same_group_commit_fail_nobody(kit: Kit) -> None:
    """A deep device report and an SOS committed together: both stored."""
    svc = kit.svc

    async def together() -> list[Any]:
        return await asyncio.gather(
            ingest(svc, [_fix_row(kit, "B1", raw=_deep())], source="osmand", device="p-b1",
                       reports=[_sos(kit, "p-b1", "B1", raw=_deep())]),
            ingest(svc, [], source="osmand", device="p-a1", reports=[_sos(kit, "p-a1", "A1")]),
            ingest(svc, [_fix_row(kit, "C1")], source="http"),
            return_exceptions=True)

    results = kit.call(together)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sorted(e["officer"] for e in svc.store.events_since(0)) == ["B1", "C1"]
    assert sorted(a.details["officer"] for a in svc.book.alerts() if a.kind == "sos") == [
        "A1", "B1"]


def test_a_group_the_store_refuses_is_retried_request_by_request(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the store refuses fails its own request only, SOS first."""
    svc = kit.svc
    real = Store.append_events

    def picky(self: Store, rows: Any, **kwargs: Any) -> Any:
        if any(r.get("officer") == "POISON" for r in rows):
            raise StoreError("could not store: a value the database refuses (test)") \
                from ValueError("refused")
        return real(self, rows, **kwargs)

    monkeypatch.setattr(Store, "append_events", picky)

    async def together() -> list[Any]:
        return await asyncio.gather(
            ingest(svc, [_fix_row(kit, "POISON")], source="http"),
            ingest(svc, [], source="osmand", device="p-a1", reports=[_sos(kit, "p-a1", "A1")]),
            ingest(svc, [_fix_row(kit, "C1")], source="http"),
            return_exceptions=True)

    poisoned, sos, other = kit.call(together)
    assert isinstance(poisoned, StoreError)
    assert not isinstance(sos, BaseException) and not isinstance(other, BaseException)
    assert [e["officer"] for e in svc.store.events_since(0)] == ["C1"]
    assert [a.details["officer"] for a in svc.book.alerts() if a.kind == "sos"] == ["A1"]
    # The store itself commits: no "store-commit" problem for one refused request.
    assert svc.health.store_ok


def test_ingestion_that_keeps_failing_flips_readyz_and_raises_a_system_alert(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = kit.svc
    real = Store.append_events

    def picky(self: Store, rows: Any, **kwargs: Any) -> Any:
        if any(r.get("officer") == "POISON" for r in rows):
            raise StoreError("refused (test)") from ValueError("refused")
        return real(self, rows, **kwargs)

    monkeypatch.setattr(Store, "append_events", picky)
    assert kit.client.get("/readyz").status_code == 200
    for i in range(watchdog.INGEST_FAILURES):
        with pytest.raises(StoreError):
            kit.call(partial(ingest, svc, [_fix_row(kit, "POISON", i)], source="http"))
    kit.call(watchdog.watch_once, svc)
    r = kit.client.get("/readyz")
    assert r.status_code == 503 and "ingest-failing" in r.text
    assert any(a.kind == "system" and a.rule == "ingest-failing" for a in svc.book.alerts())


def test_a_record_of_the_wrong_type_is_refused_before_the_group(kit: Kit) -> None:
    row = _fix_row(kit, "A1")
    row["x"] = "far"
    with pytest.raises(InvalidEvents):
        kit.call(partial(ingest, kit.svc, [row], source="http"))
