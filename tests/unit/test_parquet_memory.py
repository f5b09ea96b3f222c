"""A Parquet replay's Arrow memory does not grow with the file's length (issue 25)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_eventfiles import SITE, T0

from coverwatch.domain.events import EventBatch, OfficerRegistry
from coverwatch.formats.eventfiles import read_events

ROWS = 200_000
GROUPS = 12


def test_arrow_memory_stays_flat_across_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "long.parquet"
    rng = np.random.default_rng(3)
    schema = pa.schema([("t", pa.float64()), ("kind", pa.string()), ("officer", pa.string()),
                        ("x", pa.float64()), ("y", pa.float64())])
    with pq.ParquetWriter(path, schema, compression="none") as w:
        for g in range(GROUPS):
            t = T0 + g * ROWS + np.arange(ROWS, dtype=np.float64)
            w.write_table(pa.table({
                "t": t, "kind": ["fix"] * ROWS, "officer": [f"A{i % 50}" for i in range(ROWS)],
                "x": rng.normal(0, 5, ROWS), "y": rng.normal(0, 5, ROWS),
            }, schema=schema))
    held = []
    for batch in read_events(path, SITE, OfficerRegistry(), chunk_rows=ROWS):
        assert len(batch.fixes) == ROWS
        held.append(pa.total_allocated_bytes())
    # Pre-buffering kept every column chunk read so far: +~5 MB per row group here.
    assert held[-1] - held[2] < 4 << 20, [h >> 20 for h in held]


def test_replay_reads_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Peak memory follows the chunk read: replay_file asked for 1 M-row chunks
    # (twice the peak RSS of a 1 h Parquet replay), now READ_CHUNK_ROWS.
    from coverwatch.formats import eventfiles
    from coverwatch.reports.replay import READ_CHUNK_ROWS, replay_file

    rows = 2 * READ_CHUNK_ROWS + 5
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({
        "t": T0 + np.arange(rows, dtype=np.float64) / 100, "kind": ["fix"] * rows,
        "officer": ["A1"] * rows, "x": np.zeros(rows), "y": np.zeros(rows),
    }), path)
    sizes: list[int] = []

    def batches(reader: eventfiles.EventReader) -> Iterator[EventBatch]:
        for batch in EventReaderIter(reader):
            sizes.append(len(batch))
            yield batch

    EventReaderIter = eventfiles.EventReader.__iter__
    monkeypatch.setattr(eventfiles.EventReader, "__iter__", batches)
    evaluation, _ = replay_file(SITE, path)
    assert sum(sizes) == rows
    assert max(sizes) <= READ_CHUNK_ROWS, sizes
    assert evaluation.start == T0 * 1_000_000


def _lapsing_file(path: Path, *, swap_at: int | None = None) -> Path:
    # One officer on duty, a fix a second: for an hour 30 s at (8, 8) (north covered,
    # not the main gate), 30 s away; north's many short lapses close while the main
    # gate's one lapse stays open. Then 30 s at the gate (both covered), 30 s away.
    t: list[float] = []
    xy: list[float] = []
    for s in range(6_000):
        t.append(T0 + s)
        near = (s // 30) % 2 == 0
        xy.append((8.0 if s < 3_600 else 0.0) if near else 100.0)
    if swap_at is not None:  # out of order within the sort budget: read twice
        t[swap_at], t[swap_at + 1] = t[swap_at + 1], t[swap_at]
    n = len(t)
    pq.write_table(pa.table({
        "t": [T0 - 1.0, *t], "kind": ["duty"] + ["fix"] * n, "officer": ["A1"] * (n + 1),
        "x": [None, *xy], "y": [None, *xy], "on": [True] + [None] * n,
    }), path)
    return path


@pytest.mark.parametrize(("budget", "swap_at", "spill_rows"),
                         [(1_000, None, None), (1_000, None, 4), (100_000, 3_000, 4)])
def test_lapses_handed_out_in_order_as_they_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int, swap_at: int | None,
    spill_rows: int | None,
) -> None:
    from coverwatch.reports import replay
    from coverwatch.reports.replay import lapse_record, replay_file

    if spill_rows is not None:  # the held lapses go through the temporary file
        monkeypatch.setattr(replay, "_SPILL_ROWS", spill_rows)

    path = _lapsing_file(tmp_path / "lapsing.parquet", swap_at=swap_at)
    whole, _ = replay_file(SITE, path, budget=budget, disorder_window_us=1_000_000)
    calls: list[list[dict[str, object]]] = []
    streamed, _ = replay_file(SITE, path, budget=budget, disorder_window_us=1_000_000,
                              on_lapses=lambda lps: calls.append([lapse_record(lp) for lp in lps]))
    expected = [lapse_record(lp) for lp in whole.lapses]
    assert len(expected) > 50
    assert {r["post"] for r in expected} == {"main-gate", "north"}
    # Same lapses, same order, each once (a file read twice hands out its lapses once).
    assert [r for call in calls for r in call] == expected
    assert streamed.lapses == [] and streamed.stats == whole.stats
    if swap_at is None:
        # Past the budget the lapses go out along the way, not all at the end.
        assert len(calls) > 1
