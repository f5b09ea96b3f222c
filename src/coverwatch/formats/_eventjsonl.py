"""JSONL's fast path: msgspec decodes a block of lines to typed structs, numpy checks them.

msgspec (a chosen dependency, bench/README.md "Sixth round") decodes a block of
JSON lines straight into :class:`_Line` structs holding only the fields the
record rules read, skipping every other field without building it. The fix
rows are then checked column by column; control rows (duty, gate, flag) are
checked by the exact rules, row by row. :func:`jsonl_block` returns None when
anything is unusual and the exact per-line path (orjson, formats/eventfiles.py)
decides, so both give identical results, names and refusals.

What the caller guarantees (formats/_eventlines.py's scan): every line of the
block is braced, so the decoded values are the lines one to one when they
number the lines; and no line holds more brackets than a record may nest
deep, so the depth rule, which the structs never see, cannot be broken.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from coverwatch.domain.events import EventBatch, FixColumns, OfficerRegistry
from coverwatch.domain.records import (
    KINDS,
    T_LIMIT_S,
    T_MAX_US,
    T_MIN_US,
    EventRecordError,
    RecordRules,
    check_row,
    name_problem,
)
from coverwatch.domain.records import _time as record_time
from coverwatch.domain.time import US_PER_S
from coverwatch.formats._eventrows import control_event, project

__all__ = ["jsonl_block"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_EXACT_INT = float(1 << 53)  # past this a float's integer part is no longer exact


class _Line(msgspec.Struct, gc=False):
    """The fields the record rules read; a line's other fields are skipped.

    A field of another type (say ``"on": "yes"``) fails the block's decode, and
    the exact path names it. ``null`` is None, as absent: the rules treat both alike.
    """

    t: int | float | str | None = None
    kind: str | None = None
    officer: str | None = None
    x: float | None = None
    y: float | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    post: str | None = None
    open: bool | None = None
    flag: str | None = None
    on: bool | None = None
    capabilities: list[str] | None = None
    checkpoint: str | None = None


_FIELDS = _Line.__struct_fields__
_DECODER = msgspec.json.Decoder(_Line)


class _Decline(Exception):
    """The fast path declines this block; the exact path takes it."""


def jsonl_block(
    block: bytes | bytearray, first: int, nlines: int, rules: RecordRules,
    registry: OfficerRegistry,
) -> EventBatch | None:
    """The events of ``nlines`` braced lines numbered from ``first``; None when the
    exact path must decide (nothing is interned then)."""
    # orjson refuses a line with bytes that are not UTF-8 anywhere; msgspec only in the
    # fields it reads. Python's strict decoder refuses what orjson refuses (surrogates,
    # overlong forms, code points past U+10FFFF).
    if not block.isascii():
        try:
            bytes(block).decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        lines = _DECODER.decode_lines(block)
    except msgspec.DecodeError:  # malformed JSON, or a field of another type
        return None
    if len(lines) != nlines:
        return None
    try:
        # No line can hold lat or lon if neither name is written (nor any escape).
        latlon = b"\\u" in block or b'"lat"' in block or b'"lon"' in block
        return _batch(lines, first, rules, registry, latlon)
    except (_Decline, EventRecordError):
        return None


def _batch(
    lines: list[_Line], first: int, rules: RecordRules, registry: OfficerRegistry, latlon: bool
) -> EventBatch:
    n = len(lines)
    if n == 0:
        return EventBatch()
    kinds = [r.kind for r in lines]
    all_fix = kinds.count("fix") == n
    fixes = lines if all_fix else [r for r in lines if r.kind == "fix"]
    nfix = len(fixes)

    # Control rows are rare: the exact rules, row by row (a scan row or an unknown
    # kind: the exact path).
    ctrl: list[tuple[Any, int]] = []
    if not all_fix:
        for i, r in enumerate(lines):
            if r.kind == "fix":
                continue
            if r.kind not in KINDS:
                raise _Decline
            rec = {f: v for f in _FIELDS if (v := getattr(r, f)) is not None}
            ctrl.append((check_row(rec, rules), first + i))

    t = np.empty(0, np.int64)
    x = y = accuracy = np.empty(0)
    who: list[str | None] = []
    if nfix:
        x, has_x = _floats([r.x for r in fixes], nfix)
        y, has_y = _floats([r.y for r in fixes], nfix)
        lat, has_lat = _floats([r.lat for r in fixes] if latlon else None, nfix)
        lon, has_lon = _floats([r.lon for r in fixes] if latlon else None, nfix)
        acc, has_acc = _floats([r.accuracy_m for r in fixes], nfix)
        by_xy = has_x & has_y & ~has_lat & ~has_lon
        by_ll = has_lat & has_lon & ~has_x & ~has_y
        if not (by_xy | by_ll).all():
            raise _Decline
        # JSON has no NaN or infinity and msgspec refuses numbers out of range; past
        # 2**53 the exact path's float() of an integer is left to it.
        if not ((np.abs(x[by_xy]) < _EXACT_INT).all() and (np.abs(y[by_xy]) < _EXACT_INT).all()):
            raise _Decline
        if by_ll.any() and (rules.origin is None or not (
            (np.abs(lat[by_ll]) <= 90.0).all() and (np.abs(lon[by_ll]) <= 180.0).all())
        ):  # fmt: skip
            raise _Decline
        a = acc[has_acc]
        if not ((a >= 0).all() and (a < _EXACT_INT).all()):
            raise _Decline
        accuracy = np.where(has_acc, acc, 0.0)
        x = np.where(by_xy, x, np.nan)
        y = np.where(by_xy, y, np.nan)
        lat = np.where(by_ll, lat, np.nan)
        lon = np.where(by_ll, lon, np.nan)
        t = _times([r.t for r in fixes])
        who = [r.officer for r in fixes]

    # Officers in first-seen order over fix and duty rows, as the exact path interns them.
    order = dict.fromkeys(who) if all_fix else dict.fromkeys(
        r.officer for r in lines if r.kind == "fix" or r.kind == "duty")
    for name in order:
        if not isinstance(name, str) or not name or name_problem(name) is not None:
            raise _Decline

    # Every check passed: intern, as the per-line path would.
    ids = {name: registry.intern(name) for name in order}
    officer = np.fromiter(map(ids.__getitem__, who), np.int32, nfix)
    if nfix:
        x, y = project(x, y, lat, lon, rules)
    seq = np.arange(first, first + n, dtype=np.int64)
    if not all_fix:
        seq = seq[np.fromiter((k == "fix" for k in kinds), np.bool_, n)]
    fixcols = FixColumns(t, officer, np.ascontiguousarray(x), np.ascontiguousarray(y),
                         np.ascontiguousarray(accuracy), seq)
    return EventBatch(fixcols, [control_event(row, s, registry) for row, s in ctrl])


def _floats(values: list[float | None] | None, n: int) -> tuple[F64, npt.NDArray[np.bool_]]:
    """A field as float64 (NaN where absent: JSON has no NaN) and its 'given' mask."""
    if values is None:
        return np.full(n, np.nan), np.zeros(n, np.bool_)
    arr = np.array(values, np.float64)
    return arr, ~np.isnan(arr)


def _times(values: list[int | float | str | None]) -> I64:
    """Event times as µs, by the exact rule for each distinct value (a second's fixes
    share one); when most differ, numbers in numpy and texts by pyarrow's cast."""
    distinct = dict.fromkeys(values)  # 1 and 1.0 share a key: the same time in range
    if 4 * len(distinct) <= len(values):
        us = {v: record_time(v) for v in distinct}  # raises on a bad one: the exact path
        return np.fromiter(map(us.__getitem__, values), np.int64, len(values))
    if all(type(v) is str for v in distinct):
        from coverwatch.formats._eventfast import times_of_texts  # loads pyarrow

        got = times_of_texts(values)  # type: ignore[arg-type]
        if got is None:
            raise _Decline
        t = got
    elif all(type(v) is float or type(v) is int for v in distinct):
        try:
            secs = np.array(values, np.float64)
        except OverflowError:  # an integer past any float
            raise _Decline from None
        if not (np.abs(secs) < T_LIMIT_S).all():
            raise _Decline
        t = np.asarray(np.rint(secs * US_PER_S), np.int64)
    else:
        raise _Decline
    if not ((t >= T_MIN_US) & (t < T_MAX_US)).all():
        raise _Decline
    return t
