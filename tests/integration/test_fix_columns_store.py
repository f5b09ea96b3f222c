"""A batch stored by columns (issue 25, round 7) is the events the row path stores, on both
databases: the same keys (re-sending the rows stores nothing), columns and one leaf each."""

from __future__ import annotations

from typing import Any

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.sitefile import load_site
from coverwatch.formats.validation import plain_fix_batch, validate_records
from coverwatch.storage.eventrows import key_fixes
from coverwatch.storage.store import Store
from serverkit import EXAMPLE_YARD

T0 = 1_900_000_000 * US_PER_S
COLUMNS = ("kind", "t_us", "officer", "x", "y", "accuracy", "source", "device", "received_us",
           "late", "raw", "accuracy_source", "applied_us", "post", "flag", "on", "open",
           "capabilities")


def test_columns_store_what_the_rows_would(store: Store) -> None:
    site = load_site(EXAMPLE_YARD)
    records: list[dict[str, Any]] = [
        {"t": format_time(T0 + i % 3 * US_PER_S), "kind": "fix", "officer": f"O{i % 4}",
         "x": i * 1.5, "y": -2.0} | ({"accuracy_m": 3.0} if i % 2 else {}) for i in range(12)]
    records.append(dict(records[2]))  # repeated in the batch: stored once
    batch = plain_fix_batch(records, now_us=T0, max_future_us=10 * US_PER_S)
    assert batch is not None
    key_fixes(batch)
    received = T0 + 5
    stored = store.append_fixes(batch, received)
    assert len(stored) == 12
    rows = validate_records(records, site, now_us=T0, max_future_us=10 * US_PER_S)
    for r in rows:
        r.update(source="http", device=None, received_us=received, late=False, applied_us=None)
    again = store.append_events(rows)
    assert (again.inserted, again.duplicates) == (0, 13)
    got = store.events_since(0)
    assert [e["id"] for e in got] == [i for i, _ in stored]
    for event, row in zip(got, rows, strict=False):
        want = row | {"capabilities": None}
        assert {c: event[c] for c in COLUMNS} == {c: want[c] for c in COLUMNS}
    with store.reading() as conn:
        leaves = conn.exec_driver_sql("SELECT count(*) FROM tlog_leaves").scalar()
    assert leaves == 12
