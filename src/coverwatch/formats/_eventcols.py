"""JSONL blocks read straight into columns by the compiled fix-line pass (formats/_cjsonl.c).

:func:`jsonl_block` hands a block to the pass, which parses the lines it can vouch for
(plain fix lines: see the C source) into columns in one loop, without a Python object
per line, and hands back every other line by position. Those go through the exact
per-line rules here (:func:`jsonl_record`, then ``check_row``), as the exact path
reads them. If anything is refused, or a line is blank or too long, the result is
None and the reader's other paths decide (formats/eventfiles.py), naming the line.
So NaN, Infinity, bytes that are not UTF-8, deep nesting and long lines are judged
where they were before. Without the compiled pass (no C compiler at install, or a
stale build), :data:`KERNEL` is None and the reader does without.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Generator
from operator import itemgetter
from types import ModuleType
from typing import Any

import numpy as np
import orjson

from coverwatch.domain.events import EventBatch, FixColumns, OfficerRegistry
from coverwatch.domain.records import DUTY as _DUTY
from coverwatch.domain.records import FIX as _FIX
from coverwatch.domain.records import (
    EventRecordError,
    RecordRules,
    check_row,
    event_time,
    show_value,
)
from coverwatch.domain.records import Row as _Row
from coverwatch.formats._eventlines import MAX_LINE_BYTES, line_too_long
from coverwatch.formats._eventrows import control_event, project

__all__ = ["KERNEL", "jsonl_block", "jsonl_record", "read_batches"]

KERNEL_VERSION = 1  # the version _cjsonl.c says it implements


def _load() -> ModuleType | None:
    try:
        # An extension module, present only if built: no .py for the layout checks to see.
        kernel = importlib.import_module("coverwatch.formats._cjsonl")
    except ImportError:
        return None
    return kernel if getattr(kernel, "VERSION", None) == KERNEL_VERSION else None


KERNEL = _load()

_Bad = EventRecordError
# Each distinct time is converted in Python by the exact rule: past this many in a block
# (and a quarter of its fixes) the block goes to pyarrow's path, which converts columns.
DISTINCT_TIMES = 4096
_BOM = b"\xef\xbb\xbf"
READ_BLOCK = 8 << 20


def jsonl_record(raw: bytes | bytearray) -> dict[str, Any] | _Bad | None:
    """One JSONL line as the exact path reads it: a record, a refusal, or None (blank)."""
    if len(raw) > MAX_LINE_BYTES:
        return _Bad(None, line_too_long(len(raw)))
    if not raw.strip():
        return None
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _Bad(None, f"invalid JSON: {exc}")
    if not isinstance(rec, dict):
        return _Bad(None, f"expected a JSON object, got {show_value(rec)}")
    return rec


def read_batches(
    path: str | os.PathLike[str],
    size: int,
    rules: RecordRules,
    registry: OfficerRegistry,
    progress: Callable[[int, int], None],
) -> Generator[EventBatch, None, tuple[int, int | None]]:
    """The file read by the pass in the blocks formats/_eventlines.py's ``blocks`` reads
    (``size`` bytes, then to the end of the line). Read, not mapped: a file truncated
    while it is replayed must end the read, not kill the process (SIGBUS).

    Returns (lines read, the offset of the first block it declined, or None at the end):
    the reader goes on from there the other ways. Calls ``progress(lines, offset)``.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError:
        return 0, 0
    # Blocks of at most READ_BLOCK: one buffer, reused warm, costs a copy from the page
    # cache; a buffer of a whole large block cost the kernel's zeroed pages (about as much
    # as the pass). Where a block ends changes no result (a batch ends at a line).
    size = min(size, READ_BLOCK)
    window = size + MAX_LINE_BYTES + 1  # a block and the most its last line may run on
    eof = False
    pos = line = have = 0  # the file offset of buf[0]; lines read; bytes in buf
    with f:
        # One buffer, read into (a single copy), no larger than the file.
        buf = bytearray(min(window, os.fstat(f.fileno()).st_size) + 1)
        with memoryview(buf) as room:
            while True:
                while have < len(buf) and not eof:  # one byte past a window: is there more?
                    got = f.readinto(room[have:])
                    eof = not got
                    have += got or 0
                if not have:
                    break
                if eof and have <= size:
                    end = have
                else:
                    cut = buf.find(b"\n", size, min(window, have))
                    if cut < 0 and have > window:
                        return line, pos  # a line over the limit: the other paths name it
                    end = have if cut < 0 else cut + 1
                lo = 3 if pos == 0 and buf[:3] == _BOM else 0
                with room[lo:end] as block:
                    got_block = jsonl_block(block, line + 1, rules, registry)
                if got_block is None:
                    return line, pos
                nlines, batch = got_block
                line += nlines
                pos += end
                room[: have - end] = room[end:have]
                have -= end
                progress(line, pos)
                if len(batch):
                    yield batch
    return line, None


def jsonl_block(
    block: bytearray | memoryview, first: int, rules: RecordRules, registry: OfficerRegistry
) -> tuple[int, EventBatch] | None:
    """(lines, batch) of a block whose first line is number ``first``; None to decline.

    Nothing is interned unless the whole block is accepted.
    """
    assert KERNEL is not None
    got = KERNEL.fix_lines(block, MAX_LINE_BYTES, first, rules.origin is not None)
    if got is None:
        return None
    nlines, n, cap, cols, tokens, texts, names, name_first, others = got
    if len(tokens) > max(DISTINCT_TIMES, n // 4):
        return None  # times mostly distinct (sub-second ones): pyarrow's path converts columns
    try:
        # Each distinct time once, by the exact rule (a second's fixes share one).
        t_of = np.array([event_time(tok.decode("ascii") if texts[i] else orjson.loads(tok))
                         for i, tok in enumerate(tokens)], np.int64)
        rows: list[tuple[int, _Row]] = []
        for line, start, end in np.frombuffer(others, np.int64).reshape(-1, 3).tolist():
            rec = jsonl_record(bytes(block[start:end]))
            if rec is None:
                continue
            if isinstance(rec, _Bad):
                return None
            rows.append((line, check_row(rec, rules)))
    except _Bad:
        return None

    # Views of the pass's columns (no copy): seq, t and officer codes, x, y, lat, lon, accuracy.
    seq = np.frombuffer(cols, np.int64, n)
    tcode, who = (np.frombuffer(cols, np.int32, n, 8 * cap + 4 * cap * k) for k in range(2))
    x, y, lat, lon, acc = (np.frombuffer(cols, np.float64, n, 8 * cap * k) for k in range(2, 7))
    t = t_of[tcode] if n else np.empty(0, np.int64)
    growth = np.zeros(n)

    # Officers interned in first-seen order over fix and duty lines, as the exact path does.
    # Nothing to order when every officer is known and no other line names one.
    known = [registry.get(name) for name in names]
    named = [(line, row[2]) for line, row in rows if row[0] in (_FIX, _DUTY)]
    if named or None in known:
        seen = list(zip(np.frombuffer(name_first, np.int64).tolist(), names, strict=True))
        seen += named
        seen.sort(key=itemgetter(0))
        for _, name in seen:
            registry.intern(name)
        known = [registry.intern(name) for name in names]
    ids = np.array(known, np.int32)
    officer = ids[who] if n else np.empty(0, np.int32)

    fix_rows = [(line, row) for line, row in rows if row[0] == _FIX]
    if fix_rows:  # fixes the pass left to the exact rules (a scan, an escape...): merged in
        seq = np.concatenate([seq, [line + first for line, _ in fix_rows]])
        t = np.concatenate([t, [row[1] for _, row in fix_rows]])
        officer = np.concatenate(
            [officer, np.array([registry.intern(str(row[2])) for _, row in fix_rows], np.int32)])
        x, y, lat, lon, acc = (
            np.concatenate([col, [row[k] for _, row in fix_rows]])
            for col, k in ((x, 3), (y, 4), (lat, 5), (lon, 6), (acc, 7))
        )
        growth = np.concatenate(
            [growth, [0.0 if row[8] is None else rules.scan_growth for _, row in fix_rows]])
        order = np.argsort(seq, kind="stable")
        seq, t, officer = seq[order], t[order], officer[order]
        x, y, lat, lon = x[order], y[order], lat[order], lon[order]
        acc, growth = acc[order], growth[order]
    x, y = project(x, y, lat, lon, rules)
    fixes = FixColumns(
        np.ascontiguousarray(t, np.int64),
        np.ascontiguousarray(officer, np.int32),
        np.ascontiguousarray(x, np.float64),
        np.ascontiguousarray(y, np.float64),
        np.ascontiguousarray(acc, np.float64),
        np.ascontiguousarray(seq, np.int64),
        np.ascontiguousarray(growth, np.float64),
    )
    control = [control_event(row, line + first, registry)
               for line, row in rows if row[0] != _FIX]
    return nlines, EventBatch(fixes, control)
