"""Event files for replay: JSONL, CSV, Parquet (and GPX) readers, and the ordering stage.

:func:`read_events` turns a file into :class:`EventBatch` chunks in input order.
Each block of the file first goes through a columnar fast path (pyarrow's C++
parsers plus vectorised checks, formats/_eventfast.py); if anything in the
block is unusual (a type mix, a bad or overlong line, a blank line, a time
format the fast path does not vouch for) the whole block is re-read by the
exact per-line path, which accepts the same events and names the line and
field of anything it refuses. Both paths share the rules for control events,
so their results are identical. Lines are at most
:data:`~coverwatch.formats._eventlines.MAX_LINE_BYTES` long. A JSONL file is
first read, mapped, by a compiled pass (formats/_eventcols.py), which parses
plain fix lines into columns and hands every other line to the exact rules;
from the first block it declines, the file is read as above.

:func:`sorted_events` (formats/_eventorder.py) puts batches into ``(t, seq)``
order for the engine, whole when the input fits the budget, else streaming
within a disorder window.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coverwatch.domain.events import EventBatch, OfficerRegistry
from coverwatch.domain.records import (
    KINDS,
    CheckedRecord,
    EventRecordError,
    RecordRules,
    check_record,
    check_row,
)
from coverwatch.domain.site import Site
from coverwatch.errors import EventInputError
from coverwatch.formats._eventcols import KERNEL as _COLS
from coverwatch.formats._eventcols import jsonl_record
from coverwatch.formats._eventcols import read_batches as _read_blocks
from coverwatch.formats._eventlines import (
    MAX_CSV_FIELD_CHARS,
    MAX_LINE_BYTES,
    blocks,
    json_as_orjson,
    line_too_long,
    scan,
)
from coverwatch.formats._eventorder import NeedsFullSort, sorted_events
from coverwatch.formats._eventrows import (
    COLUMNS,
    FORMATS,
    Collector,
    csv_capabilities,
    csv_record,
    parquet_column,
    parquet_record,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from coverwatch.formats.gpx import GpxOptions

__all__ = [
    "COLUMNS",
    "FORMATS",
    "KINDS",
    "MAX_CSV_FIELD_CHARS",
    "MAX_LINE_BYTES",
    "CheckedRecord",
    "EventReader",
    "EventRecordError",
    "NeedsFullSort",
    "RecordRules",
    "check_record",
    "read_events",
    "sorted_events",
]

_BOM = b"\xef\xbb\xbf"
_NUMERIC = ("x", "y", "lat", "lon", "accuracy_m")
_BOOLS = ("open", "on")
_CSV_TRUE = ("true", "1")
_CSV_FALSE = ("false", "0")

_Bad = EventRecordError  # short local name for the many raise sites


# --------------------------------------------------------------------------
# Readers


class EventReader:
    """Iterates a file's events as :class:`EventBatch` chunks, in input order.

    After (or during) iteration: ``skipped`` lists the line numbers of bad lines
    skipped (``skip_bad=True``), ``lines_read`` is the number of the last line
    (Parquet: row) read, ``total_bytes``/``bytes_read`` measure progress.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        site: Site,
        registry: OfficerRegistry,
        *,
        skip_bad: bool = False,
        chunk_rows: int = 1_000_000,
        format: str | None = None,
        gpx: GpxOptions | None = None,
    ) -> None:
        self.path = Path(path)
        self.gpx = gpx
        self.site = site
        self.registry = registry
        self.skip_bad = skip_bad
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        self.chunk_rows = chunk_rows
        if format is None:
            format = FORMATS.get(self.path.suffix.lower())
            if format is None:
                raise EventInputError(
                    str(path), None, None,
                    f"cannot tell the format from the suffix {self.path.suffix!r}; "
                    "use .jsonl, .csv, .parquet or .gpx (or say which format)",
                )  # fmt: skip
        if format not in ("jsonl", "csv", "parquet", "gpx"):
            raise ValueError(f"unknown event file format {format!r}")
        self.format = format
        self.skipped: list[int] = []
        self.lines_read = 0
        self.bytes_read = 0
        self.total_bytes = self.path.stat().st_size
        self._rules = RecordRules.of(site)
        self._name = str(path)
        # JSONL's `t` column type (pyarrow's name) that parsed last time, tried first next block.
        self._json_t = ["float64", "string"]
        # Set by tests to check that the exact path alone gives the same result.
        self._fast = True

    @property
    def _block_bytes(self) -> int:
        return min(max(self.chunk_rows * 100, 1), 256 << 20)

    def __iter__(self) -> Iterator[EventBatch]:
        if self.format == "jsonl":
            return self._jsonl()
        if self.format == "csv":
            return self._csv()
        if self.format == "gpx":
            return self._gpx()
        return self._parquet()

    # -- shared ----------------------------------------------------------

    def _fail(self, line: int, bad: _Bad) -> None:
        if not self.skip_bad:
            raise EventInputError(self._name, line, bad.field, bad.message)
        self.skipped.append(line)

    def _exact(self, records: Iterable[tuple[int, dict[str, Any] | _Bad]]) -> EventBatch:
        out = Collector(self._rules, self.registry)
        for line, rec in records:
            if isinstance(rec, _Bad):
                self._fail(line, rec)
                continue
            try:
                row = check_row(rec, self._rules)
            except _Bad as bad:
                self._fail(line, bad)
                continue
            out.add(row, line)
        return out.batch()

    # -- GPX (formats/gpx.py): small files, read whole ------------------------

    def _gpx(self) -> Iterator[EventBatch]:
        from coverwatch.formats.accuracy import default_accuracy_m
        from coverwatch.formats.gpx import GpxOptions, gpx_records

        out = Collector(self._rules, self.registry)
        records = gpx_records(self.path, self.gpx or GpxOptions(),
                              default_accuracy_m=default_accuracy_m(self.site))
        for seq, (where, rec) in enumerate(records, 1):
            try:
                out.add(check_row(rec, self._rules), seq)
            except _Bad as bad:
                field = where + (f".{bad.field}" if bad.field else "")
                raise EventInputError(self._name, None, field, bad.message) from None
        if self.gpx is not None and self.gpx.alongside is not None:
            from coverwatch.formats.eventrecords import file_records

            name = str(self.gpx.alongside)
            for seq, (where, rec) in enumerate(file_records(name, self.site), len(records) + 1):
                try:
                    out.add(check_row(rec, self._rules), seq)
                except _Bad as bad:
                    raise EventInputError(name, None, f"{where}, {bad.field}", bad.message) \
                        from None
        self.lines_read = len(records)
        self.bytes_read = self.total_bytes
        yield out.batch()

    # -- JSONL -----------------------------------------------------------

    def _jsonl(self) -> Iterator[EventBatch]:
        line = 0
        start: int | None = 0
        if self._fast and _COLS is not None:
            # The file read by the compiled pass (formats/_eventcols.py) up to
            # the first block it declines; the paths below go on from there.
            line, start = yield from _read_blocks(self.path, self._block_bytes,
                                                  self._rules, self.registry, self._progress)
        if start is not None:
            with open(self.path, "rb") as f:
                f.seek(start)
                for block in blocks(f, self._block_bytes, bom=start == 0):
                    shape = scan(block)
                    batch = self._jsonl_block(block, line + 1, shape.lines,
                                              fast=shape.plain and shape.few_openers
                                              and shape.longest <= MAX_LINE_BYTES)
                    line += shape.lines
                    self.lines_read = line
                    self.bytes_read += len(block)
                    if len(batch):
                        yield batch
        self.bytes_read = self.total_bytes

    def _progress(self, lines: int, offset: int) -> None:
        self.lines_read = lines
        self.bytes_read = offset

    def _jsonl_block(self, block: bytearray, first: int, nlines: int, *, fast: bool) -> EventBatch:
        # No line blank or starting with white space: row i is line first + i.
        if self._fast and fast and json_as_orjson(block):
            from coverwatch.formats._eventfast import columns as _columns
            from coverwatch.formats._eventfast import fast_block as _fast_block

            table = self._read_json(block)
            if table is not None and table.num_rows == nlines:
                cols = _columns(table)
                seq = np.arange(first, first + nlines, dtype=np.int64)
                batch = _fast_block(cols, seq, self._rules, self.registry, None)
                if batch is not None:
                    return batch
        return self._exact(self._jsonl_records(block, first))

    def _read_json(self, block: bytearray) -> pa.Table | None:
        # Only the fix fields are typed: naming absent fields in the schema makes
        # pyarrow fill null columns, which costs more than inferring rare ones.
        import pyarrow as pa  # here: pyarrow loads only for a block the compiled pass declines
        import pyarrow.json as pajson

        for t_name in list(self._json_t):
            schema = pa.schema(
                [
                    ("t", getattr(pa, t_name)()), ("kind", pa.string()), ("officer", pa.string()),
                    ("x", pa.float64()), ("y", pa.float64()), ("accuracy_m", pa.float64()),
                ]
            )  # fmt: skip
            try:
                table = pajson.read_json(
                    pa.BufferReader(block),
                    read_options=pajson.ReadOptions(block_size=16 << 20),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=schema, unexpected_field_behavior="infer"
                    ),
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            if t_name != self._json_t[0]:
                self._json_t.reverse()
            return table
        return None

    @staticmethod
    def _jsonl_records(block: bytearray, first: int) -> Iterator[tuple[int, dict[str, Any] | _Bad]]:
        for i, raw in enumerate(block.split(b"\n")):
            rec = jsonl_record(raw)
            if rec is not None:
                yield first + i, rec

    # -- CSV -------------------------------------------------------------

    def _csv(self) -> Iterator[EventBatch]:
        with open(self.path, "rb") as f:
            head = f.readline(MAX_LINE_BYTES + 1)
            if len(head) > MAX_LINE_BYTES:
                raise EventInputError(self._name, 1, None, line_too_long(len(head)))
            if head.startswith(_BOM):
                head = head[len(_BOM) :]
            header = self._csv_header(head)
            self.lines_read = 1
            self.bytes_read = len(head)
            line = 1
            for block in blocks(f, self._block_bytes):
                shape = scan(block)
                # A line no longer than the field limit cannot hold a field over it.
                batch = self._csv_block(block, line + 1, header, shape.lines,
                                        fast=shape.longest <= MAX_CSV_FIELD_CHARS)
                line += shape.lines
                self.lines_read = line
                self.bytes_read += len(block)
                if len(batch):
                    yield batch
        self.bytes_read = self.total_bytes

    def _csv_header(self, head: bytes) -> list[str]:
        try:
            text = head.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise EventInputError(self._name, 1, None, "header is not UTF-8 text") from None
        if not text:
            raise EventInputError(self._name, 1, None, "missing CSV header")
        header = [h.strip() for h in next(csv.reader([text]))]
        for name in header:
            if name not in COLUMNS:
                raise EventInputError(
                    self._name, 1, name,
                    f"unknown column {name!r}; columns are {','.join(COLUMNS)}",
                )  # fmt: skip
        if len(set(header)) != len(header):
            raise EventInputError(self._name, 1, None, "a column appears twice in the header")
        for need in ("t", "kind"):
            if need not in header:
                raise EventInputError(self._name, 1, need, f"the header has no {need} column")
        return header

    def _csv_block(
        self, block: bytearray, first: int, header: list[str], nlines: int, *, fast: bool
    ) -> EventBatch:
        if self._fast and fast:
            import pyarrow as pa
            import pyarrow.csv as pacsv  # here: a JSONL replay's start need not load it

            from coverwatch.formats._eventfast import columns as _columns
            from coverwatch.formats._eventfast import fast_block as _fast_block

            types: dict[str, pa.DataType] = {}
            for name in header:
                if name in _NUMERIC:
                    types[name] = pa.float64()
                elif name in _BOOLS:
                    types[name] = pa.bool_()
                else:
                    types[name] = pa.string()
            try:
                table = pacsv.read_csv(
                    pa.BufferReader(block),
                    read_options=pacsv.ReadOptions(column_names=header, block_size=1 << 22),
                    parse_options=pacsv.ParseOptions(
                        newlines_in_values=False, ignore_empty_lines=False
                    ),
                    convert_options=pacsv.ConvertOptions(
                        column_types=types,
                        null_values=[""],
                        true_values=list(_CSV_TRUE),
                        false_values=list(_CSV_FALSE),
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=True,
                    ),
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                table = None
            if table is not None and table.num_rows == nlines:
                cols = _columns(table)
                seq = np.arange(first, first + nlines, dtype=np.int64)
                batch = _fast_block(cols, seq, self._rules, self.registry, csv_capabilities)
                if batch is not None:
                    return batch
        return self._exact(self._csv_records(block, first, header))

    @staticmethod
    def _csv_records(
        block: bytearray, first: int, header: list[str]
    ) -> Iterator[tuple[int, dict[str, Any] | _Bad]]:
        for i, raw in enumerate(block.split(b"\n")):
            if len(raw) > MAX_LINE_BYTES:
                yield first + i, _Bad(None, line_too_long(len(raw)))
                continue
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8").rstrip("\r")
            except UnicodeDecodeError:
                yield first + i, _Bad(None, "line is not UTF-8 text")
                continue
            try:
                cells = next(csv.reader([text], strict=True))
            except csv.Error as exc:
                too_long = "field limit" in str(exc)
                yield first + i, _Bad(None, _field_too_long() if too_long else f"bad CSV: {exc}")
                continue
            if len(cells) != len(header):
                yield first + i, _Bad(None, f"expected {len(header)} cells, got {len(cells)}")
                continue
            # The csv module's limit is process-wide and may have been raised: check ours.
            long_cell = next((h for h, c in zip(header, cells, strict=True)
                              if len(c) > MAX_CSV_FIELD_CHARS), None)
            if long_cell is not None:
                yield first + i, _Bad(long_cell, _field_too_long())
                continue
            yield first + i, csv_record(dict(zip(header, cells, strict=True)))

    # -- Parquet ---------------------------------------------------------

    def _parquet(self) -> Iterator[EventBatch]:
        import pyarrow as pa
        import pyarrow.parquet as pq  # here: a JSONL replay's start need not load it

        from coverwatch.formats._eventfast import columns as _columns
        from coverwatch.formats._eventfast import fast_block as _fast_block

        try:
            # No pre-buffering: it keeps every column chunk read so far alive until the
            # file is closed, so memory would grow with the file's length.
            pf = pq.ParquetFile(self.path, pre_buffer=False)
        except (pa.ArrowException, OSError) as exc:
            raise EventInputError(self._name, None, None, f"not a Parquet file: {exc}") from None
        names = pf.schema_arrow.names
        for name in names:
            if name not in COLUMNS and not name.startswith("__"):
                raise EventInputError(
                    self._name, None, name,
                    f"unknown column {name!r}; columns are {','.join(COLUMNS)}",
                )  # fmt: skip
        for need in ("t", "kind"):
            if need not in names:
                raise EventInputError(self._name, None, need, f"the file has no {need} column")
        wanted = [n for n in names if n in COLUMNS]
        total = max(pf.metadata.num_rows, 1)
        row = 0
        for rb in pf.iter_batches(batch_size=self.chunk_rows, columns=wanted):
            cols = {name: parquet_column(arr) for name, arr in _columns(rb).items()}
            n = rb.num_rows
            seq = np.arange(row + 1, row + n + 1, dtype=np.int64)
            batch = None
            if self._fast:
                batch = _fast_block(cols, seq, self._rules, self.registry, parquet_record)
            if batch is None:
                batch = self._exact(self._parquet_records(cols, row + 1))
            row += n
            self.lines_read = row
            self.bytes_read = int(self.total_bytes * row / total)
            if len(batch):
                yield batch
        self.bytes_read = self.total_bytes

    @staticmethod
    def _parquet_records(
        cols: Mapping[str, pa.Array], first: int
    ) -> Iterator[tuple[int, dict[str, Any] | _Bad]]:
        keys = list(cols)
        values = [cols[k].to_pylist() for k in keys]
        for i, row in enumerate(zip(*values, strict=True)):
            yield first + i, parquet_record(dict(zip(keys, row, strict=True)))



def _field_too_long() -> str:
    return f"a field is longer than {MAX_CSV_FIELD_CHARS:,} characters"


def read_events(
    path: str | os.PathLike[str],
    site: Site,
    registry: OfficerRegistry,
    *,
    skip_bad: bool = False,
    chunk_rows: int = 1_000_000,
    format: str | None = None,
    gpx: GpxOptions | None = None,
) -> EventReader:
    """Open an event file (JSONL, CSV, Parquet or GPX) for reading in input order.

    Iterating the result yields :class:`EventBatch` chunks. A malformed line raises
    :class:`EventInputError` naming the line and field, unless ``skip_bad`` is set,
    in which case its line number is recorded in ``reader.skipped``.
    """
    return EventReader(
        path, site, registry, skip_bad=skip_bad, chunk_rows=chunk_rows, format=format, gpx=gpx
    )


