"""The tokens of a commit group are checked inside its transaction: a stale one refuses
only its own request, and a bad record still fails only its own (issue 25, issue 19)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coverwatch.server.groupcommit import append_isolated
from coverwatch.storage import Store, open_store
from coverwatch.storage.auth import hash_token
from coverwatch.storage.devices import CredentialsChanged, HeldToken

T0 = 1_700_000_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(None, tmp_path / "data")
    yield s
    s.close()


def _row(request: int, officer: str, **extra: object) -> dict[str, object]:
    return {"kind": "fix", "officer": officer, "t_us": T0 + request, "x": 1.0, "y": 2.0,
            "accuracy": 5.0, "source": "osmand", "device": f"phone-{officer}",
            "_request": request, **extra}


def _report(request: int, officer: str) -> dict[str, object]:
    return {"device": f"phone-{officer}", "officer": officer, "t_us": T0 + request,
            "used": True, "source": "osmand", "_request": request}


def _held(store: Store, token: str) -> HeldToken:
    device = store.device_for_token(token)
    assert device is not None
    return HeldToken(hash_token(token), device)


def test_a_revoked_token_in_a_group_refuses_only_its_request(store: Store) -> None:
    _, a = store.create_device("phone-A1", "A1")
    _, b = store.create_device("phone-B1", "B1")
    held = {0: _held(store, a), 1: _held(store, b)}
    store.deactivate_device("phone-A1")  # committed after the lookup, before the commit
    result, failed = append_isolated(
        store, [_row(0, "A1"), _row(1, "B1")], [_report(0, "A1"), _report(1, "B1")], (),
        held)
    assert [r["officer"] for r in result.rows] == ["B1"]
    assert [r["device"] for r in result.reports] == ["phone-B1"]
    assert list(failed) == [0] and isinstance(failed[0], CredentialsChanged)
    assert [e["officer"] for e in store.events_since(0)] == ["B1"]


def test_every_token_of_a_group_stale_stores_nothing(store: Store) -> None:
    _, a = store.create_device("phone-A1", "A1")
    held = {0: _held(store, a)}
    store.rotate_device_token("phone-A1")
    result, failed = append_isolated(store, [_row(0, "A1")], [_report(0, "A1")], (), held)
    assert result.rows == [] and list(failed) == [0]
    assert store.events_since(0) == []


def test_a_bad_record_and_a_stale_token_fail_only_their_own(store: Store) -> None:
    _, a = store.create_device("phone-A1", "A1")
    _, b = store.create_device("phone-B1", "B1")
    _, c = store.create_device("phone-C1", "C1")
    held = {0: _held(store, a), 1: _held(store, b), 2: _held(store, c)}
    store.deactivate_device("phone-B1")
    rows = [_row(0, "A1"), _row(1, "B1"), _row(2, "C1", kind="teleport")]  # not storable
    result, failed = append_isolated(store, rows, [_report(0, "A1")], (), held)
    assert [r["officer"] for r in result.rows] == ["A1"]
    assert sorted(failed) == [1, 2]
    assert isinstance(failed[1], CredentialsChanged)
    assert not isinstance(failed[2], CredentialsChanged)


def test_a_group_without_held_tokens_is_not_checked(store: Store) -> None:
    # Uploads whose device was looked up for the request carry no token to check.
    result, failed = append_isolated(store, [_row(0, "Z9")], [], (), None)
    assert len(result.rows) == 1 and failed == {}


def test_repeated_report_keys_in_one_group_are_stored_once(store: Store) -> None:
    store.create_device("phone-A1", "A1")
    reports = [_report(0, "A1"), _report(0, "A1"), _report(1, "A1")]
    result = store.append_events([], reports=reports)
    assert len(result.reports) == 2
    again = store.append_events([], reports=reports)
    assert again.reports == []
