"""Retention: the purge removes old positions only, spares legal holds, and is audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.domain.time import US_PER_S
from coverwatch.errors import StoreError
from coverwatch.evidence.retention import DAY_US, purge_now, set_retention_days
from coverwatch.storage import Store, open_store, verify_audit

NOW = 1_900_000_000 * US_PER_S


def _events(store: Store) -> None:
    rows: list[dict[str, object]] = []
    for day in range(10):
        t = NOW - day * DAY_US - 3600 * US_PER_S
        rows.append({"kind": "fix", "t_us": t, "officer": "A1", "x": 0.0, "y": 0.0,
                     "accuracy": 3.0, "source": "test"})
        rows.append({"kind": "duty", "t_us": t, "officer": "A1", "on": True, "source": "test"})
    store.append_events(rows)


def _fix_days(store: Store) -> list[int]:
    rows = store.events_between(0, NOW + 1)
    return sorted((NOW - int(r["t_us"])) // DAY_US for r in rows if r["kind"] == "fix")


def test_purge_keeps_recent_positions_held_ranges_and_other_records(store: Store) -> None:
    _events(store)
    assert purge_now(store, "server", now=NOW) is None  # no period: kept forever
    set_retention_days(store, 5, "ann", "yard")
    hold = store.add_hold(NOW - 8 * DAY_US, NOW - 7 * DAY_US, "inquest 2027/17", "ada")
    removed = purge_now(store, "server", now=NOW)
    assert removed == 4  # days 5, 6, 8, 9 go; day 7 is held
    assert _fix_days(store) == [0, 1, 2, 3, 4, 7]
    assert sum(1 for r in store.events_between(0, NOW + 1) if r["kind"] == "duty") == 10
    store.release_hold(hold.id, "ada")
    assert purge_now(store, "server", now=NOW) == 1
    with pytest.raises(StoreError):
        store.release_hold(hold.id, "ada")
    actions = [e.action for e in store.audit_entries(limit=100)]
    assert actions == ["retention.set", "hold.placed", "retention.purged", "hold.released",
                       "retention.purged"]
    assert verify_audit(store).ok


def test_hold_needs_a_reason_and_an_order(store: Store) -> None:
    with pytest.raises(StoreError):
        store.add_hold(NOW, NOW - 1, "reason here", "ada")
    with pytest.raises(StoreError):
        store.add_hold(NOW - 1, NOW, "", "ada")


def test_cli_retention(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_store(None, data).close()
    runner = CliRunner()
    args = ["--data-dir", str(data)]
    assert runner.invoke(app, ["retention", "set", "90", *args]).exit_code == 0
    r = runner.invoke(app, ["retention", "hold", "--since", "2027-01-01T00:00:00Z", "--until",
                            "2027-02-01T00:00:00Z", "--reason", "inquiry", *args])
    assert r.exit_code == 0 and "legal hold 1 placed" in r.stdout
    assert runner.invoke(app, ["retention", "purge", *args]).stdout.startswith("purged 0")
    bad = runner.invoke(app, ["retention", "set", "0", *args])
    assert bad.exit_code == 2
