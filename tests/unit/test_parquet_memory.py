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
