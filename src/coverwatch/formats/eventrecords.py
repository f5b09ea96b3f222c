"""Event files read record by record (not columnar), for storing them.

``coverwatch replay`` reads files through the columnar readers in
:mod:`coverwatch.formats.eventfiles`; ``coverwatch events import`` needs each
record as the live paths see it (a dict checked by the shared rules), with
where it came from for error messages. Same formats: JSONL, CSV, Parquet, GPX.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from coverwatch.domain.site import Site
from coverwatch.errors import EventInputError
from coverwatch.formats._eventrows import COLUMNS, FORMATS, csv_record, parquet_record
from coverwatch.formats.gpx import GpxOptions

__all__ = ["file_records"]


def file_records(
    path: str | os.PathLike[str], site: Site, gpx: GpxOptions | None = None,
) -> Iterator[tuple[str, Any]]:
    """Yield (where, record) for each event of the file: ``line N``, ``row N`` or a GPX point."""
    file = Path(path)
    name = str(file)
    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise EventInputError(name, None, None, f"cannot tell the format from the suffix "
                              f"{file.suffix!r}; use .jsonl, .csv, .parquet or .gpx")
    if fmt == "gpx":
        from coverwatch.formats.accuracy import default_accuracy_m
        from coverwatch.formats.gpx import gpx_records

        options = gpx or GpxOptions()
        yield from gpx_records(file, options, default_accuracy_m=default_accuracy_m(site))
        if options.alongside is not None:  # the duty (and gates, flags) given with the track
            alongside = options.alongside
            yield from ((f"{alongside} {where}", rec)
                        for where, rec in file_records(alongside, site))
    elif fmt == "jsonl":
        with open(file, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"line {n}", orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise EventInputError(name, n, None, f"invalid JSON: {e}") from None
    elif fmt == "csv":
        with open(file, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            for col in reader.fieldnames or []:
                if col not in COLUMNS:
                    raise EventInputError(name, 1, col, f"unknown column {col!r}; columns are "
                                                        f"{','.join(COLUMNS)}")
            for n, cells in enumerate(reader, 2):
                yield f"line {n}", csv_record({k: v for k, v in cells.items() if v is not None})
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(file)
        for n, rec in enumerate(table.to_pylist(), 1):
            yield f"row {n}", parquet_record({k: v for k, v in rec.items() if v is not None})
