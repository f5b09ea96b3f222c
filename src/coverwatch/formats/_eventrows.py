"""Event rows for the readers: the column names, the exact path's collector, and record helpers.

Shared by the columnar fast path (formats/_eventfast.py) and the exact per-line
path (formats/eventfiles.py), so both build control events and projections alike.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

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
from coverwatch.domain.records import DUTY as _DUTY
from coverwatch.domain.records import FIX as _FIX
from coverwatch.domain.records import KINDS, RecordRules
from coverwatch.domain.records import Row as _Row

__all__ = [
    "COLUMNS",
    "FORMATS",
    "Collector",
    "control_event",
    "csv_capabilities",
    "csv_record",
    "parquet_column",
    "parquet_record",
    "project",
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
_CSV_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_CSV_TRUE = ("true", "1")
_CSV_FALSE = ("false", "0")

F64 = npt.NDArray[np.float64]


def control_event(row: _Row, seq: int, registry: OfficerRegistry) -> ControlEvent:
    kind, t = row[0], row[1]
    if kind == _DUTY:
        assert row[2] is not None
        return DutyEvent(t, registry.intern(row[2]), row[9], row[10], seq)
    assert row[8] is not None
    if kind == KINDS.index("gate"):
        return GateEvent(t, row[8], row[9], seq)
    return FlagEvent(t, row[8], row[9], seq)


def project(x: F64, y: F64, lat: F64, lon: F64, rules: RecordRules) -> tuple[F64, F64]:
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


class Collector:
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
        self.growth: list[float] = []
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
            # A fix row naming a checkpoint is a scan: its accuracy grows at walking speed.
            self.growth.append(0.0 if row[8] is None else self.rules.scan_growth)
            self.seq.append(seq)
        else:
            self.control.append(control_event(row, seq, self.registry))

    def batch(self) -> EventBatch:
        x, y = project(
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
            np.array(self.growth, np.float64),
        )
        return EventBatch(fixes, self.control)



def csv_capabilities(rec: dict[str, Any]) -> dict[str, Any]:
    caps = rec.get("capabilities")
    if isinstance(caps, str):
        rec["capabilities"] = [c.strip() for c in caps.split(";") if c.strip()]
    return rec


def csv_record(cells: dict[str, str]) -> dict[str, Any]:
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
    return csv_capabilities(rec)


def parquet_record(rec: dict[str, Any]) -> dict[str, Any]:
    # Parquet may hold capabilities as a list column or as CSV-style text.
    return csv_capabilities(rec)


def parquet_column(arr: pa.Array) -> pa.Array:
    """Normalise a Parquet column to the types the checks expect."""
    import pyarrow as pa  # here: Parquet's reader loads it anyway, JSONL need not
    import pyarrow.compute as pc

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

