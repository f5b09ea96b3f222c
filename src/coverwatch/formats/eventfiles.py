"""Event files for replay: JSONL, CSV, Parquet (and GPX) readers, and the ordering stage.

:func:`read_events` turns a file into :class:`EventBatch` chunks in input order.
Each block of the file first goes through a columnar fast path (pyarrow's C++
parsers plus vectorised checks); if anything in the block is unusual (a type
mix, a bad line, a blank line, a time format the fast path does not vouch
for) the whole block is re-read by the exact per-line path, which accepts the
same events and names the line and field of anything it refuses. Both paths
share the rules for control events, so their results are identical.

:func:`sorted_events` puts batches into ``(t, seq)`` order for the engine,
whole when the input fits the budget, else streaming within a disorder window.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from coverwatch.domain.events import (
    ControlEvent,
    DutyEvent,
    EventBatch,
    FixColumns,
    FlagEvent,
    GateEvent,
    OfficerRegistry,
)
from coverwatch.domain.geometry import project_latlon
from coverwatch.domain.records import (
    DUTY as _DUTY,
)
from coverwatch.domain.records import (
    FIX as _FIX,
)
from coverwatch.domain.records import (
    KINDS,
    T_MAX_US,
    T_MIN_US,
    CheckedRecord,
    EventRecordError,
    RecordRules,
    check_record,
    check_row,
    name_problem,
    show_value,
)
from coverwatch.domain.records import (
    T_LIMIT_S as _T_LIMIT_S,
)
from coverwatch.domain.records import Row as _Row
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.errors import EventInputError, OutOfOrderError

if TYPE_CHECKING:
    from coverwatch.formats.gpx import GpxOptions

__all__ = [
    "COLUMNS",
    "FORMATS",
    "KINDS",
    "CheckedRecord",
    "EventReader",
    "EventRecordError",
    "NeedsFullSort",
    "RecordRules",
    "check_record",
    "read_events",
    "sorted_events",
]

COLUMNS = (
    "t", "kind", "officer", "x", "y", "lat", "lon", "accuracy_m",
    "post", "open", "flag", "on", "capabilities",
)  # fmt: skip
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
           ".parquet": "parquet", ".pq": "parquet", ".gpx": "gpx"}  # fmt: skip

_NUMERIC = ("x", "y", "lat", "lon", "accuracy_m")
_BOOLS = ("open", "on")
_TEXT = ("kind", "officer", "post", "flag")
# The ISO shapes on which pyarrow's cast and datetime.fromisoformat agree exactly.
_ISO_FAST = (
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_NUMBER_FAST = r"^[+-]?(\d+\.?\d*|\.\d+)$"
_CSV_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_CSV_TRUE = ("true", "1")
_CSV_FALSE = ("false", "0")
_BOM = b"\xef\xbb\xbf"
_BLANKISH = re.compile(rb"\n[ \t\r\n]")

_Bad = EventRecordError  # short local name for the many raise sites

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]


def _control(row: _Row, seq: int, registry: OfficerRegistry) -> ControlEvent:
    kind, t = row[0], row[1]
    if kind == _DUTY:
        assert row[2] is not None
        return DutyEvent(t, registry.intern(row[2]), row[9], row[10], seq)
    assert row[8] is not None
    if kind == KINDS.index("gate"):
        return GateEvent(t, row[8], row[9], seq)
    return FlagEvent(t, row[8], row[9], seq)


def _project(x: F64, y: F64, lat: F64, lon: F64, rules: RecordRules) -> tuple[F64, F64]:
    """Fill x/y from lat/lon where lat/lon were given (rows with NaN x)."""
    use_ll = np.isnan(x)
    if not use_ll.any():
        return x, y
    assert rules.origin is not None
    px, py = project_latlon(lat[use_ll], lon[use_ll], rules.origin[0], rules.origin[1])
    x = x.copy()
    y = y.copy()
    x[use_ll] = px
    y[use_ll] = py
    return x, y


class _Collector:
    """Builds a batch from checked rows, one at a time (the slow path)."""

    def __init__(self, rules: RecordRules, registry: OfficerRegistry) -> None:
        self.rules = rules
        self.registry = registry
        self.t: list[int] = []
        self.officer: list[int] = []
        self.x: list[float] = []
        self.y: list[float] = []
        self.lat: list[float] = []
        self.lon: list[float] = []
        self.accuracy: list[float] = []
        self.seq: list[int] = []
        self.control: list[ControlEvent] = []

    def add(self, row: _Row, seq: int) -> None:
        if row[0] == _FIX:
            assert row[2] is not None
            self.t.append(row[1])
            self.officer.append(self.registry.intern(row[2]))
            self.x.append(row[3])
            self.y.append(row[4])
            self.lat.append(row[5])
            self.lon.append(row[6])
            self.accuracy.append(row[7])
            self.seq.append(seq)
        else:
            self.control.append(_control(row, seq, self.registry))

    def batch(self) -> EventBatch:
        x, y = _project(
            np.array(self.x, np.float64),
            np.array(self.y, np.float64),
            np.array(self.lat, np.float64),
            np.array(self.lon, np.float64),
            self.rules,
        )
        fixes = FixColumns(
            np.array(self.t, np.int64),
            np.array(self.officer, np.int32),
            x,
            y,
            np.array(self.accuracy, np.float64),
            np.array(self.seq, np.int64),
        )
        return EventBatch(fixes, self.control)


# --------------------------------------------------------------------------
# The columnar fast path, shared by all formats


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _columns(table: pa.Table | pa.RecordBatch) -> dict[str, pa.Array]:
    """The table's columns as plain arrays, leaving out those with no values at all."""
    out = {}
    for name in table.column_names:
        arr = table.column(name)
        if arr.null_count < len(arr):
            out[name] = _plain(arr)
    return out


def _times_fast(arr: pa.Array) -> I64 | None:
    """Event times as µs, or None if the column is not one the fast path vouches for."""
    if arr.null_count:
        return None
    typ = arr.type
    if pa.types.is_integer(typ):
        secs = arr.to_numpy(zero_copy_only=False).astype(np.int64)
        if len(secs) and (secs.min() <= -_T_LIMIT_S or secs.max() >= _T_LIMIT_S):
            return None
        return np.asarray(secs * US_PER_S, np.int64)
    if pa.types.is_floating(typ):
        fsecs = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        if not np.all(np.abs(fsecs) < _T_LIMIT_S):  # also false for NaN
            return None
        return np.asarray(np.rint(fsecs * US_PER_S), np.int64)
    if pa.types.is_timestamp(typ):
        if typ.tz is None:
            return None
        us = pc.cast(arr, pa.timestamp("us", typ.tz), safe=False)
        return np.asarray(us.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        if not len(arr):
            return np.empty(0, np.int64)
        if pc.all(pc.match_substring_regex(arr, _ISO_FAST)).as_py():
            try:
                stamps = pc.cast(arr, pa.timestamp("us", "UTC"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
            return np.asarray(stamps.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        if pc.all(pc.match_substring_regex(arr, _NUMBER_FAST)).as_py():
            try:
                numbers = pc.cast(arr, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
            return _times_fast(numbers)
    return None


def _floats(cols: Mapping[str, pa.Array], name: str) -> tuple[F64, BoolArr] | None:
    """A numeric column as float64 values plus a 'given' mask; None if not numeric."""
    arr = cols.get(name)
    if arr is None:
        return None
    if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        if pa.types.is_null(arr.type):
            return np.full(len(arr), np.nan), np.zeros(len(arr), np.bool_)
        raise _FastFail
    values = np.asarray(arr.to_numpy(zero_copy_only=False), np.float64)
    given = (
        np.ones(len(arr), np.bool_)
        if not arr.null_count
        else np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), np.bool_)
    )
    return values, given


class _FastFail(Exception):
    """The fast path declines this block; the exact path takes it."""


def _fast_block(
    cols: Mapping[str, pa.Array],
    seq: I64,
    rules: RecordRules,
    registry: OfficerRegistry,
    to_record: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> EventBatch | None:
    """Convert a block of typed columns; None when the exact path must decide."""
    try:
        return _fast_block_inner(cols, seq, rules, registry, to_record)
    except (_FastFail, _Bad, pa.ArrowException):
        return None


def _fast_block_inner(
    cols: Mapping[str, pa.Array],
    seq: I64,
    rules: RecordRules,
    registry: OfficerRegistry,
    to_record: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> EventBatch:
    n = len(seq)
    if n == 0:
        return EventBatch()
    kind = cols.get("kind")
    if kind is None or kind.null_count or not pa.types.is_string(kind.type):
        raise _FastFail
    encoded = pc.dictionary_encode(kind)
    names = encoded.dictionary.to_pylist()
    if any(k not in KINDS for k in names):
        raise _FastFail
    codes = np.array([KINDS.index(k) for k in names], np.int8)[
        encoded.indices.to_numpy(zero_copy_only=False)
    ]
    is_fix = codes == _FIX
    all_fix = bool(is_fix.all())
    fix_rows = np.arange(n) if all_fix else np.flatnonzero(is_fix)
    ctrl_rows = np.empty(0, np.intp) if all_fix else np.flatnonzero(~is_fix)
    nfix = len(fix_rows)
    fix_mask = pa.array(is_fix)

    def fix_col(name: str) -> pa.Array | None:
        arr = cols.get(name)
        return arr if arr is None or all_fix else arr.filter(fix_mask)

    fix_cols = {name: a for name in COLUMNS if (a := fix_col(name)) is not None}

    x = y = lat = lon = np.full(nfix, np.nan)
    accuracy = np.zeros(nfix)
    t = np.empty(0, np.int64)
    if nfix:
        off = fix_cols.get("officer")
        if off is None or off.null_count or not pa.types.is_string(off.type):
            raise _FastFail
        zeros = np.zeros(nfix, np.bool_)
        nan = np.full(nfix, np.nan)
        x, has_x = _floats(fix_cols, "x") or (nan, zeros)
        y, has_y = _floats(fix_cols, "y") or (nan, zeros)
        lat, has_lat = _floats(fix_cols, "lat") or (nan, zeros)
        lon, has_lon = _floats(fix_cols, "lon") or (nan, zeros)
        acc, has_acc = _floats(fix_cols, "accuracy_m") or (nan, zeros)
        by_xy = has_x & has_y & ~has_lat & ~has_lon
        by_ll = has_lat & has_lon & ~has_x & ~has_y
        if not (by_xy | by_ll).all():
            raise _FastFail
        if not (np.isfinite(x[by_xy]).all() and np.isfinite(y[by_xy]).all()):
            raise _FastFail
        if by_ll.any():
            la, lo = lat[by_ll], lon[by_ll]
            if rules.origin is None or not (
                (np.abs(la) <= 90.0).all() and (np.abs(lo) <= 180.0).all()
            ):
                raise _FastFail  # also catches NaN
        a = acc[has_acc]
        if not (a >= 0).all() or not np.isfinite(a).all():
            raise _FastFail
        accuracy = np.where(has_acc, acc, 0.0)
        x = np.where(by_xy, x, np.nan)
        y = np.where(by_xy, y, np.nan)
        t_arr = fix_cols.get("t")
        if t_arr is None:
            raise _FastFail
        times = _times_fast(t_arr)
        if times is None or not ((times >= T_MIN_US) & (times < T_MAX_US)).all():
            raise _FastFail
        t = times

    who_names: list[str] = []
    who_idx = pos_fix = None
    if nfix:
        # Officers of fix and duty rows, in row order, as a dictionary (interned below).
        who = cols["officer"]
        if all_fix:
            enc = pc.dictionary_encode(who)
        else:
            with_officer = np.flatnonzero((codes == _FIX) | (codes == _DUTY))
            enc = pc.dictionary_encode(who.take(pa.array(with_officer)))
            pos_fix = np.flatnonzero(codes[with_officer] == _FIX)
        who_names = enc.dictionary.to_pylist()
        if "" in who_names or any(name_problem(s) for s in who_names):
            raise _FastFail
        who_idx = enc.indices.to_numpy(zero_copy_only=False)

    # Control events are rare: check them with the exact rules, row by row.
    ctrl: list[tuple[_Row, int]] = []
    if len(ctrl_rows):
        ctrl_mask = pa.array(~is_fix)
        present = {name: cols[name].filter(ctrl_mask).to_pylist() for name in cols}
        keys = list(present)
        for i, values in enumerate(zip(*present.values(), strict=True)):
            rec = dict(zip(keys, values, strict=True))
            if to_record is not None:
                rec = to_record(rec)
            ctrl.append((check_row(rec, rules), int(seq[ctrl_rows[i]])))

    # All checks passed: intern officers in first-seen order over fix and duty rows,
    # exactly as the per-line path would.
    officer_ids = np.empty(0, np.int32)
    if nfix:
        assert who_idx is not None
        ids = np.array([registry.intern(s) for s in who_names], np.int32)
        officer_ids = ids[who_idx if pos_fix is None else who_idx[pos_fix]]
    x, y = _project(x, y, lat, lon, rules)
    fixes = FixColumns(
        np.ascontiguousarray(t, np.int64),
        officer_ids,
        np.ascontiguousarray(x),
        np.ascontiguousarray(y),
        np.ascontiguousarray(accuracy),
        np.ascontiguousarray(seq[fix_rows] if not all_fix else seq, np.int64),
    )
    control = [_control(row, s, registry) for row, s in ctrl]
    return EventBatch(fixes, control)


# --------------------------------------------------------------------------
# Readers


def _blocks(f: io.BufferedReader, size: int) -> Iterator[bytearray]:
    """Newline-aligned blocks of about ``size`` bytes (the last may lack a newline)."""
    first = True
    while True:
        block = bytearray(size)
        got = f.readinto(block)
        if not got:
            return
        del block[got:]
        block += f.readline()  # finish the last line; no copy of the block itself
        if first:
            first = False
            if block.startswith(_BOM):
                del block[: len(_BOM)]
        if block:
            yield block


# pyarrow's JSON reader crashes the process on an unknown field nested some ten
# thousand deep; a line with more openers than this takes the exact path, where
# orjson and the per-record depth rule refuse it with the line and field.
_FAST_MAX_OPENERS = 64


def _openers_per_line(block: bytes | bytearray) -> int:
    """The most '[' and '{' on one line of ``block``: a bound on its JSON depth."""
    data = np.frombuffer(block, dtype=np.uint8)
    openers = np.cumsum((data == ord("[")) | (data == ord("{")), dtype=np.int64)
    if not len(openers):
        return 0
    ends = np.flatnonzero(data == ord("\n"))
    at_ends = np.concatenate(([0], openers[ends], [openers[-1]]))
    return int(np.diff(at_ends).max())


def _line_count(block: bytes | bytearray) -> int:
    return block.count(b"\n") + (0 if block.endswith(b"\n") else 1)


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
        # JSONL's `t` column type that parsed last time, tried first next block.
        self._json_t: list[pa.DataType] = [pa.float64(), pa.string()]
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
        out = _Collector(self._rules, self.registry)
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

        out = _Collector(self._rules, self.registry)
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
        with open(self.path, "rb") as f:
            for block in _blocks(f, self._block_bytes):
                nlines = _line_count(block)
                batch = self._jsonl_block(block, line + 1, nlines)
                line += nlines
                self.lines_read = line
                self.bytes_read += len(block)
                if len(batch):
                    yield batch
        self.bytes_read = self.total_bytes

    def _jsonl_block(self, block: bytearray, first: int, nlines: int) -> EventBatch:
        # No line starting with white space means no blank lines: row i is line first + i.
        if self._fast and not block[:1].isspace() and not _BLANKISH.search(block) \
                and _openers_per_line(block) <= _FAST_MAX_OPENERS:
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
        for t_type in list(self._json_t):
            schema = pa.schema(
                [
                    ("t", t_type), ("kind", pa.string()), ("officer", pa.string()),
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
            if t_type != self._json_t[0]:
                self._json_t.reverse()
            return table
        return None

    @staticmethod
    def _jsonl_records(block: bytearray, first: int) -> Iterator[tuple[int, dict[str, Any] | _Bad]]:
        for i, raw in enumerate(block.split(b"\n")):
            if not raw.strip():
                continue
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield first + i, _Bad(None, f"invalid JSON: {exc}")
                continue
            if not isinstance(rec, dict):
                yield first + i, _Bad(None, f"expected a JSON object, got {show_value(rec)}")
                continue
            yield first + i, rec

    # -- CSV -------------------------------------------------------------

    def _csv(self) -> Iterator[EventBatch]:
        with open(self.path, "rb") as f:
            head = f.readline()
            if head.startswith(_BOM):
                head = head[len(_BOM) :]
            header = self._csv_header(head)
            self.lines_read = 1
            self.bytes_read = len(head)
            line = 1
            for block in _blocks(f, self._block_bytes):
                nlines = _line_count(block)
                batch = self._csv_block(block, line + 1, header, nlines)
                line += nlines
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
        self, block: bytearray, first: int, header: list[str], nlines: int
    ) -> EventBatch:
        if self._fast:
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
                batch = _fast_block(cols, seq, self._rules, self.registry, _csv_capabilities)
                if batch is not None:
                    return batch
        return self._exact(self._csv_records(block, first, header))

    @staticmethod
    def _csv_records(
        block: bytearray, first: int, header: list[str]
    ) -> Iterator[tuple[int, dict[str, Any] | _Bad]]:
        for i, raw in enumerate(block.split(b"\n")):
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
                yield first + i, _Bad(None, f"bad CSV: {exc}")
                continue
            if len(cells) != len(header):
                yield first + i, _Bad(None, f"expected {len(header)} cells, got {len(cells)}")
                continue
            yield first + i, _csv_record(dict(zip(header, cells, strict=True)))

    # -- Parquet ---------------------------------------------------------

    def _parquet(self) -> Iterator[EventBatch]:
        try:
            pf = pq.ParquetFile(self.path)
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
            cols = {name: _parquet_column(arr) for name, arr in _columns(rb).items()}
            n = rb.num_rows
            seq = np.arange(row + 1, row + n + 1, dtype=np.int64)
            batch = None
            if self._fast:
                batch = _fast_block(cols, seq, self._rules, self.registry, _parquet_record)
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
            yield first + i, _parquet_record(dict(zip(keys, row, strict=True)))


def _csv_capabilities(rec: dict[str, Any]) -> dict[str, Any]:
    caps = rec.get("capabilities")
    if isinstance(caps, str):
        rec["capabilities"] = [c.strip() for c in caps.split(";") if c.strip()]
    return rec


def _csv_record(cells: dict[str, str]) -> dict[str, Any]:
    """Turn CSV text cells into the Python values the exact rules check."""
    rec: dict[str, Any] = {}
    for name, cell in cells.items():
        if cell == "":
            continue  # empty means absent
        value: Any = cell
        if name in _NUMERIC and _CSV_NUMBER.match(cell):
            value = float(cell)
        elif name in _BOOLS and cell in _CSV_TRUE:
            value = True
        elif name in _BOOLS and cell in _CSV_FALSE:
            value = False
        rec[name] = value
    return _csv_capabilities(rec)


def _parquet_record(rec: dict[str, Any]) -> dict[str, Any]:
    # Parquet may hold capabilities as a list column or as CSV-style text.
    return _csv_capabilities(rec)


def _parquet_column(arr: pa.Array) -> pa.Array:
    """Normalise a Parquet column to the types the checks expect."""
    typ = arr.type
    if pa.types.is_large_string(typ):
        return arr.cast(pa.string())
    if pa.types.is_timestamp(typ) and typ.unit != "us":
        return pc.cast(arr, pa.timestamp("us", typ.tz), safe=False)
    if pa.types.is_decimal(typ) or pa.types.is_float16(typ):
        return arr.cast(pa.float64())
    if pa.types.is_large_list(typ):
        return arr.cast(pa.list_(typ.value_type))
    return arr


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


# --------------------------------------------------------------------------
# Ordering


class _Pending:
    """Events held for sorting: fixes as columns, control events with their keys."""

    def __init__(self) -> None:
        self.fixes: list[FixColumns] = []
        self.control: list[ControlEvent] = []
        self.count = 0

    def add(self, batch: EventBatch) -> None:
        if len(batch.fixes):
            self.fixes.append(batch.fixes)
        self.control.extend(batch.control)
        self.count += len(batch)

    def sorted(self) -> tuple[FixColumns, list[ControlEvent], I64, I64, npt.NDArray[np.intp]]:
        """All pending events in (t, seq) order: fixes, control, and the merged keys.

        The last array says, for each event in order, its index into the fixes
        (>= 0) or ``-1 - i`` for control event ``i``.
        """
        fixes = FixColumns.concat(self.fixes)
        if _in_order(fixes.t, fixes.seq):
            return (fixes, self.control, *_merge_sorted(fixes, self.control))
        ct = np.fromiter((e.t for e in self.control), np.int64, len(self.control))
        cs = np.fromiter((e.seq for e in self.control), np.int64, len(self.control))
        t = np.concatenate([fixes.t, ct])
        s = np.concatenate([fixes.seq, cs])
        where = np.concatenate(
            [np.arange(len(fixes), dtype=np.intp), -1 - np.arange(len(ct), dtype=np.intp)]
        )
        # Two stable passes equal lexsort by (t, seq) but are far quicker on input that
        # is already nearly in order (timsort finds the runs).
        by_seq = np.argsort(s, kind="stable")
        order = by_seq[np.argsort(t[by_seq], kind="stable")]
        return fixes, self.control, t[order], s[order], where[order]


def _in_order(t: I64, seq: I64) -> bool:
    """Whether rows are already in (t, seq) order: the common case, which needs no sort."""
    if len(t) < 2:
        return True
    dt = np.diff(t)
    return bool(((dt > 0) | ((dt == 0) & (np.diff(seq) > 0))).all())


def _merge_sorted(
    fixes: FixColumns, control: list[ControlEvent]
) -> tuple[I64, I64, npt.NDArray[np.intp]]:
    """Merge the few control events into fixes already in order (no full sort)."""
    n = len(fixes)
    if not control:
        return fixes.t, fixes.seq, np.arange(n, dtype=np.intp)
    order = sorted(range(len(control)), key=lambda i: (control[i].t, control[i].seq))
    ft, fs = fixes.t, fixes.seq
    pos = np.empty(len(order), np.intp)
    for k, i in enumerate(order):
        ev = control[i]
        lo = int(np.searchsorted(ft, ev.t, side="left"))
        hi = int(np.searchsorted(ft, ev.t, side="right"))
        pos[k] = lo + int(np.searchsorted(fs[lo:hi], ev.seq, side="left"))
    ct = np.fromiter((control[i].t for i in order), np.int64, len(order))
    cs = np.fromiter((control[i].seq for i in order), np.int64, len(order))
    where = np.insert(np.arange(n, dtype=np.intp), pos, -1 - np.asarray(order, np.intp))
    return np.insert(ft, pos, ct), np.insert(fs, pos, cs), where


def _emit(
    fixes: FixColumns,
    control: list[ControlEvent],
    where: npt.NDArray[np.intp],
    size: int,
) -> Iterator[EventBatch]:
    for lo in range(0, len(where), size):
        part = where[lo : lo + size]
        fix_idx = part[part >= 0]
        ctrl_idx = -1 - part[part < 0]
        rows: npt.NDArray[np.intp] | slice = fix_idx
        if len(fix_idx) and int(fix_idx[-1]) - int(fix_idx[0]) + 1 == len(fix_idx) \
                and bool((np.diff(fix_idx) == 1).all()):
            rows = slice(int(fix_idx[0]), int(fix_idx[-1]) + 1)  # in order: a view, no copy
        yield EventBatch(fixes.take(rows), [control[i] for i in ctrl_idx.tolist()])


def sorted_events(
    batches: Iterable[EventBatch],
    *,
    budget: int = 8_000_000,
    disorder_window_us: int = 60_000_000,
    optimistic: bool = False,
) -> Iterator[EventBatch]:
    """Yield the events of ``batches`` in ``(t, seq)`` order, input order for ties.

    With ``optimistic`` set, events are released as soon as they are older than
    the window, without waiting for the budget to fill, so evaluation can start
    at once; if the input then turns out to be out of order while still within
    the budget, :class:`NeedsFullSort` is raised and the caller must start again
    without ``optimistic`` (a file can be read twice). The result is the same.

    Up to ``budget`` events the input is sorted whole, however disordered. Past
    it, events are released once they are older than the latest time seen minus
    ``disorder_window_us``; an event earlier than one already released raises
    :class:`OutOfOrderError`. Yielded batches are each sorted and follow one another.
    """
    if disorder_window_us < 0:
        raise ValueError("disorder_window_us must be >= 0")
    pending = _Pending()
    size = 1
    seen = 0
    max_t: int | None = None
    released: tuple[int, int] | None = None  # (t, seq) of the last event released

    for batch in batches:
        if not len(batch):
            continue
        size = max(size, len(batch))
        seen += len(batch)
        bounds = batch.time_bounds()
        assert bounds is not None
        if released is not None:
            try:
                _check_order(batch, released, disorder_window_us)
            except OutOfOrderError as e:
                if optimistic and seen <= budget:
                    raise NeedsFullSort(str(e)) from None
                raise
        pending.add(batch)
        max_t = bounds[1] if max_t is None else max(max_t, bounds[1])
        if pending.count <= budget and not optimistic:
            continue
        fixes, control, t, s, where = pending.sorted()
        cut = int(np.searchsorted(t, max_t - disorder_window_us, side="left"))
        pending = _Pending()
        if cut < len(where):
            rest = where[cut:]
            rest_control = [control[i] for i in (-1 - rest[rest < 0]).tolist()]
            pending.add(EventBatch(fixes.take(rest[rest >= 0]), rest_control))
        if cut:
            released = (int(t[cut - 1]), int(s[cut - 1]))
            yield from _emit(fixes, control, where[:cut], size)

    if pending.count:
        fixes, control, _t, _s, where = pending.sorted()
        yield from _emit(fixes, control, where, size)


class NeedsFullSort(OutOfOrderError):
    """Optimistic streaming met disorder within the budget: sort the input whole."""


def _check_order(batch: EventBatch, released: tuple[int, int], window_us: int) -> None:
    rt, rs = released
    lines: list[tuple[int, int]] = []
    f = batch.fixes
    if len(f):
        early = (f.t < rt) | ((f.t == rt) & (f.seq < rs))
        if early.any():
            i = int(np.flatnonzero(early)[0])
            lines.append((int(f.seq[i]), int(f.t[i])))
    for ev in batch.control:
        if ev.t < rt or (ev.t == rt and ev.seq < rs):
            lines.append((ev.seq, ev.t))
            break
    if lines:
        seq, t = min(lines)
        err = OutOfOrderError(
            f"line {seq}: event at {format_time(t)} is earlier than events already "
            f"passed on ({format_time(rt)}); the input exceeds the disorder window of "
            f"{window_us / US_PER_S:g} s. Sort the file by time first (e.g. by `t`), "
            "or raise the disorder window or the in-memory sort budget"
        )
        err.line = seq  # type: ignore[attr-defined]
        raise err
