"""Plain fixes as columns (issue 25, round 7) do what the row path does with the same records:
the same checks, the same stored events and leaves, the same live cover."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.sitefile import load_site
from coverwatch.formats.validation import InvalidEvents, plain_fix_batch, validate_records
from coverwatch.server.live import LiveCover
from coverwatch.storage import open_store
from coverwatch.storage.eventrows import key_fixes

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
SITE = load_site(YARD)
T0 = 1_900_000_000 * US_PER_S
NOW = T0 + 60 * US_PER_S
FUTURE = 5 * US_PER_S

_number = st.one_of(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3), st.floats(),
                    st.just(1e308), st.integers(-3, 3), st.booleans(), st.none(), st.just("1"))
_time = st.one_of(st.sampled_from([format_time(T0), format_time(T0 + US_PER_S),
                                   format_time(NOW + 10 * US_PER_S)]),
                  st.sampled_from(["2030-13-01T00:00:00Z", "", "yesterday"]), st.integers(0, 9))
_record = st.fixed_dictionaries(
    {"t": _time, "kind": st.sampled_from(["fix", "fix", "fix", "duty"]),
     "officer": st.one_of(st.sampled_from(["A1", "B2", "é3"]), st.just(""), st.just("x\n"),
                          st.just("o" * 201), st.integers(0, 2)),
     "x": _number, "y": _number},
    optional={"accuracy_m": st.one_of(st.floats(0, 50), st.none(), st.just(-1.0),
                                      st.integers(0, 5), st.floats()),
              "post": st.just("p1")},
)


def _rows(records: list[Any]) -> list[dict[str, Any]] | None:
    try:
        return validate_records(records, SITE, now_us=NOW, max_future_us=FUTURE)
    except InvalidEvents:
        return None


@settings(max_examples=300, deadline=None)
@given(st.lists(_record, min_size=1, max_size=6))
def test_a_batch_taken_as_columns_is_what_the_rows_would_be(records: list[Any]) -> None:
    batch = plain_fix_batch(records, now_us=NOW, max_future_us=FUTURE)
    rows = _rows(records)
    if batch is not None:  # never accepts what the row path refuses, nor changes a value
        assert rows is not None
        assert batch.rows() == rows


def test_plain_fixes_are_taken_as_columns_and_anything_else_is_not() -> None:
    fix = {"t": format_time(T0), "kind": "fix", "officer": "A1", "x": 1.0, "y": 2.0}
    assert plain_fix_batch([fix, fix | {"accuracy_m": 3.0}], now_us=NOW,
                           max_future_us=FUTURE) is not None
    for odd in ({"x": math.nan}, {"x": 1}, {"accuracy_m": -1.0}, {"officer": ""},
                {"kind": "duty"}, {"alarm": "sos"}, {"t": format_time(NOW + 9 * US_PER_S)}):
        assert plain_fix_batch([fix, fix | odd], now_us=NOW, max_future_us=FUTURE) is None


def _records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(40):
        rec = {"t": format_time(T0 + (i % 7) * US_PER_S), "kind": "fix",
               "officer": f"O{i % 9}", "x": float(i % 5) * 10.5, "y": -float(i % 3)}
        if i % 4:
            rec["accuracy_m"] = float(i % 6)
        out.append(rec)
    return out + out[3:9]  # some re-sent within the batch


def _dump(store: Any) -> tuple[list[Any], list[Any]]:
    with store.reading() as conn:
        events = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM events ORDER BY id")]
        leaves = [tuple(r) for r in conn.exec_driver_sql(
            "SELECT * FROM tlog_leaves ORDER BY idx")]
    return events, leaves


def test_columns_store_the_same_events_and_leaves_as_rows(tmp_path: Path) -> None:
    records = _records()
    received = NOW + 17
    by_rows = open_store(None, tmp_path / "rows")
    by_columns = open_store(None, tmp_path / "columns")
    try:
        for part in (records[:20], records):  # the second time, the first half is re-sent
            rows = validate_records(part, SITE, now_us=NOW, max_future_us=FUTURE)
            for r in rows:
                r.update(source="http", device=None, received_us=received, late=False,
                         applied_us=None)
            want = by_rows.append_events(rows)
            batch = plain_fix_batch(part, now_us=NOW, max_future_us=FUTURE)
            assert batch is not None
            key_fixes(batch)
            got = by_columns.append_fixes(batch, received)
            assert [i for i, _ in got] == want.ids
        assert _dump(by_columns) == _dump(by_rows)
    finally:
        by_rows.close()
        by_columns.close()


@pytest.mark.parametrize("resent", [False, True])
def test_columns_feed_the_live_cover_as_rows_do(resent: bool) -> None:
    records = _records()
    rows = validate_records(records, SITE, now_us=NOW, max_future_us=FUTURE)
    ids = list(range(1, len(rows) + 1))
    keep = list(range(len(rows))) if not resent else list(range(0, len(rows), 2))
    by_rows = LiveCover(SITE, lateness_us=0, start_horizon=T0 - 1)
    by_columns = LiveCover(SITE, lateness_us=0, start_horizon=T0 - 1)
    batch = plain_fix_batch(records, now_us=NOW, max_future_us=FUTURE)
    assert batch is not None
    # The later half first: the second add brings older and newer fixes of its officers.
    for part in (keep[len(keep) // 2:], keep[:len(keep) // 2]):
        by_rows.add([rows[k] | {"id": ids[k], "late": False} for k in part])
        by_columns.add_fix_columns(*([col[k] for k in part] for col in (
            batch.t_us, batch.officer, batch.x, batch.y, batch.accuracy)),
            [ids[k] for k in part])
    assert by_columns.positions() == by_rows.positions()
    assert by_columns.max_id == by_rows.max_id
    horizon = T0 + 30 * US_PER_S
    assert by_columns.advance_to(horizon) == by_rows.advance_to(horizon)
    assert by_columns.cover_states() == by_rows.cover_states()
