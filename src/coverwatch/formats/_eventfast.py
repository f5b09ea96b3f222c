"""The columnar fast path of the event readers: pyarrow's parsers plus vectorised checks.

:func:`fast_block` converts a block of typed columns into an :class:`EventBatch`,
or returns None when anything in it is unusual; the exact per-line path then
decides (formats/eventfiles.py). Both share the control-event rules, so their
results are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from coverwatch.domain.events import EventBatch, FixColumns, OfficerRegistry
from coverwatch.domain.records import DUTY as _DUTY
from coverwatch.domain.records import FIX as _FIX
from coverwatch.domain.records import (
    KINDS,
    T_MAX_US,
    T_MIN_US,
    EventRecordError,
    RecordRules,
    check_row,
    name_problem,
)
from coverwatch.domain.records import T_LIMIT_S as _T_LIMIT_S
from coverwatch.domain.records import Row as _Row
from coverwatch.domain.time import US_PER_S
from coverwatch.formats import _arrowcall as ac
from coverwatch.formats._eventrows import control_event, project

__all__ = ["FastFail", "columns", "fast_block"]

# The ISO shapes on which pyarrow's cast and datetime.fromisoformat agree exactly.
_ISO_FAST = (
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_NUMBER_FAST = r"^[+-]?(\d+\.?\d*|\.\d+)$"

_Bad = EventRecordError

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _indices(rows: npt.NDArray[Any]) -> pa.Array:
    """Row numbers as an Arrow int64 array over the same memory: ``pa.array`` of an
    ndarray imports numpy.ma (10-17 ms of a replay's start) to ask if it is masked."""
    rows = np.ascontiguousarray(rows, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])


def columns(table: pa.Table | pa.RecordBatch) -> dict[str, pa.Array]:
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
        us = ac.cast(arr, pa.timestamp("us", typ.tz), safe=False)
        return np.asarray(ac.cast(us, pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        if not len(arr):
            return np.empty(0, np.int64)
        # A second's fixes share one time: check and parse each distinct text once.
        enc = ac.dictionary_encode(arr)
        if 4 * len(enc.dictionary) <= len(arr):
            distinct = _times_fast(enc.dictionary)
            if distinct is None:
                return None
            return np.asarray(distinct[enc.indices.to_numpy(zero_copy_only=False)], np.int64)
        if ac.all_true(ac.matches(arr, _ISO_FAST)):
            try:
                stamps = ac.cast(arr, pa.timestamp("us", "UTC"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
            return np.asarray(ac.cast(stamps, pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        if ac.all_true(ac.matches(arr, _NUMBER_FAST)):
            try:
                numbers = ac.cast(arr, pa.float64())
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
        raise FastFail
    values = np.asarray(arr.to_numpy(zero_copy_only=False), np.float64)
    given = (
        np.ones(len(arr), np.bool_)
        if not arr.null_count
        else np.asarray(ac.is_valid(arr).to_numpy(zero_copy_only=False), np.bool_)
    )
    return values, given


class FastFail(Exception):
    """The fast path declines this block; the exact path takes it."""


def fast_block(
    cols: Mapping[str, pa.Array],
    seq: I64,
    rules: RecordRules,
    registry: OfficerRegistry,
    to_record: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> EventBatch | None:
    """Convert a block of typed columns; None when the exact path must decide."""
    try:
        return _fast_block_inner(cols, seq, rules, registry, to_record)
    except (FastFail, _Bad, pa.ArrowException, UnicodeDecodeError):
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
        raise FastFail
    # Nearly every row is a fix: compare, and name the kinds of the other rows only.
    is_fix = np.asarray(ac.equal(kind, "fix").to_numpy(zero_copy_only=False), np.bool_)
    all_fix = bool(is_fix.all())
    fix_rows = np.arange(n) if all_fix else np.flatnonzero(is_fix)
    ctrl_rows = np.empty(0, np.intp) if all_fix else np.flatnonzero(~is_fix)
    nfix = len(fix_rows)
    codes = np.full(n, _FIX, np.int8)
    if len(ctrl_rows):
        ctrl_kinds = ac.take(kind, _indices(ctrl_rows)).to_pylist()
        if any(k not in KINDS for k in ctrl_kinds):
            raise FastFail
        codes[ctrl_rows] = [KINDS.index(k) for k in ctrl_kinds]

    # Columns are converted whole and the fix rows picked in numpy: cheaper than
    # filtering each Arrow column. A control row that makes a column unusual
    # sends the block to the exact path, which decides.
    def fix_floats(name: str) -> tuple[F64, BoolArr] | None:
        got = _floats(cols, name)
        return got if got is None or all_fix else (got[0][fix_rows], got[1][fix_rows])

    x = y = lat = lon = np.full(nfix, np.nan)
    accuracy = np.zeros(nfix)
    t = np.empty(0, np.int64)
    who_names: list[str] = []
    who_codes = np.empty(0, np.int64)
    if nfix:
        zeros = np.zeros(nfix, np.bool_)
        nan = np.full(nfix, np.nan)
        x, has_x = fix_floats("x") or (nan, zeros)
        y, has_y = fix_floats("y") or (nan, zeros)
        lat, has_lat = fix_floats("lat") or (nan, zeros)
        lon, has_lon = fix_floats("lon") or (nan, zeros)
        acc, has_acc = fix_floats("accuracy_m") or (nan, zeros)
        by_xy = has_x & has_y & ~has_lat & ~has_lon
        by_ll = has_lat & has_lon & ~has_x & ~has_y
        if not (by_xy | by_ll).all():
            raise FastFail
        if not (np.isfinite(x[by_xy]).all() and np.isfinite(y[by_xy]).all()):
            raise FastFail
        if by_ll.any():
            la, lo = lat[by_ll], lon[by_ll]
            if rules.origin is None or not (
                (np.abs(la) <= 90.0).all() and (np.abs(lo) <= 180.0).all()
            ):
                raise FastFail  # also catches NaN
        a = acc[has_acc]
        if not (a >= 0).all() or not np.isfinite(a).all():
            raise FastFail
        accuracy = np.where(has_acc, acc, 0.0)
        x = np.where(by_xy, x, np.nan)
        y = np.where(by_xy, y, np.nan)
        t_arr = cols.get("t")
        if t_arr is None:
            raise FastFail
        times = _times_fast(t_arr)
        if times is None:
            raise FastFail
        t = times if all_fix else times[fix_rows]
        if not ((t >= T_MIN_US) & (t < T_MAX_US)).all():
            raise FastFail

        # Officers of fix and duty rows as dictionary codes, the names in first-seen
        # order over those rows (interned below, as the per-line path would).
        who = cols.get("officer")
        if who is None or not pa.types.is_string(who.type):
            raise FastFail
        enc = ac.dictionary_encode(who)
        codes_all = np.asarray(ac.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False),
                               np.int64)
        names_all = enc.dictionary
        if all_fix:
            if who.null_count:
                raise FastFail
            order = np.arange(len(names_all))
            who_codes = codes_all
        else:
            who_codes = codes_all[fix_rows]
            if (who_codes < 0).any():
                raise FastFail
            # Dictionary codes are numbered in first-seen order over all rows; that is
            # the order over fix and duty rows unless another row names an officer.
            other = ctrl_rows[codes[ctrl_rows] != _DUTY]
            if (codes_all[other] < 0).all():
                order = np.arange(len(names_all))
            else:
                used = codes_all[(codes == _FIX) | (codes == _DUTY)]
                used = used[used >= 0]
                distinct, first_at = np.unique(used, return_index=True)
                order = distinct[np.argsort(first_at)]
            rank = np.full(len(names_all), -1, np.int64)
            rank[order] = np.arange(len(order))
            who_codes = rank[who_codes]
            names_all = ac.take(names_all, _indices(order))
        who_names = names_all.to_pylist()
        if "" in who_names or any(name_problem(s) for s in who_names):
            raise FastFail

    # Control events are rare: check them with the exact rules, row by row.
    ctrl: list[tuple[_Row, int]] = []
    if len(ctrl_rows):
        pick = _indices(ctrl_rows)
        present = {name: ac.take(cols[name], pick).to_pylist() for name in cols}
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
        ids = np.array([registry.intern(s) for s in who_names], np.int32)
        officer_ids = ids[who_codes]
    x, y = project(x, y, lat, lon, rules)
    fixes = FixColumns(
        np.ascontiguousarray(t, np.int64),
        officer_ids,
        np.ascontiguousarray(x),
        np.ascontiguousarray(y),
        np.ascontiguousarray(accuracy),
        np.ascontiguousarray(seq[fix_rows] if not all_fix else seq, np.int64),
    )
    control = [control_event(row, s, registry) for row, s in ctrl]
    return EventBatch(fixes, control)

