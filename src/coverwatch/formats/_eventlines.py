"""Lines of JSONL and CSV event files: newline-aligned blocks, the line limits, a cheap scan.

:func:`blocks` reads a file in newline-aligned blocks and never holds more than
one block plus :data:`MAX_LINE_BYTES` of a line (a longer line is cut there and
the rest of it skipped, so the exact path refuses it by its number).
:func:`scan` tells, in a few vectorised passes over a block, what the columnar
fast path needs to know before it may parse the block: the number of lines,
whether any line is blank or starts with white space, the longest line, and
whether any line holds more than :data:`FAST_MAX_OPENERS` brackets.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from coverwatch.domain.records import MAX_DEPTH

__all__ = [
    "FAST_MAX_OPENERS",
    "MAX_CSV_FIELD_CHARS",
    "MAX_LINE_BYTES",
    "BlockShape",
    "blocks",
    "json_as_orjson",
    "line_too_long",
    "scan",
]

MAX_LINE_BYTES = 1 << 20  # an event line is about 100 bytes; 1 MiB is far past any real one
MAX_CSV_FIELD_CHARS = 131_072  # the csv module's own default field limit
# The fast path never walks a record's values (pyarrow's JSON reader even crashes
# the process on an unknown field nested some ten thousand deep): a line with more
# brackets than a record may nest deep takes the exact path, where orjson and the
# per-record depth rule judge it and name its line and field. At 64, lines nested
# 17 to 64 deep in a field the fast path ignores were accepted by it and refused
# by the exact path.
FAST_MAX_OPENERS = MAX_DEPTH

_BOM = b"\xef\xbb\xbf"
_SLICE = 1 << 22  # bytes scanned at a time: the temporaries stay small and in cache
_SPACE = np.zeros(256, np.bool_)
_SPACE[[9, 10, 11, 12, 13, 32]] = True  # bytes.isspace()
_NL, _CURLY = ord("\n"), ord("{")


def line_too_long(nbytes: int) -> str:
    """The message for a line over the limit."""
    return f"line is longer than {MAX_LINE_BYTES:,} bytes ({nbytes:,} or more)"


def blocks(f: io.BufferedReader, size: int, *, bom: bool = True) -> Iterator[bytearray]:
    """Newline-aligned blocks of about ``size`` bytes (the last may lack a newline).

    A line running past ``size`` and then past :data:`MAX_LINE_BYTES` more is cut
    (its rest skipped up to its newline), so it still counts as one line and is
    over the limit, without ever being read whole. A byte-order mark opening the
    first block is dropped (``bom``: the file is read from its start).
    """
    first = bom
    while True:
        block = bytearray(size)
        got = f.readinto(block)
        if not got:
            return
        del block[got:]
        tail = f.readline(MAX_LINE_BYTES + 1)  # finish the last line; no copy of the block
        block += tail
        if tail and not tail.endswith(b"\n") and len(tail) > MAX_LINE_BYTES:
            while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            block += b"\n"
        if first:
            first = False
            if block.startswith(_BOM):
                del block[: len(_BOM)]
        if block:
            yield block


@dataclass(frozen=True, slots=True)
class BlockShape:
    """What :func:`scan` found in a block."""

    lines: int
    plain: bool  # no line is blank or starts with white space: row i is line i
    longest: int  # bytes in the longest line, newline excluded
    few_openers: bool  # no line holds more than FAST_MAX_OPENERS '[' and '{'


def scan(block: bytes | bytearray) -> BlockShape:
    """Line count, blank lines, longest line and bracket bound of ``block``.

    A line can nest no deeper than its count of brackets. Counting, per slice of
    whole lines, every bracket but the ``{`` that opens a line bounds any single
    line of the slice; only a slice whose bound is over the limit (say, many
    duty lines with capability lists) is counted line by line.
    """
    data = np.frombuffer(block, np.uint8)
    n = len(data)
    lines = longest = 0
    plain = few = True
    lo = 0
    while lo < n:
        cut = block.find(b"\n", lo + _SLICE - 1)
        hi = n if cut < 0 else cut + 1
        part = data[lo:hi]
        nl = np.flatnonzero(part == _NL)
        starts = np.concatenate(([0], nl + 1))
        ends = np.append(nl, len(part))
        if starts[-1] == len(part):  # the slice ends with a newline: no line after it
            starts, ends = starts[:-1], ends[:-1]
        lines += len(starts)
        longest = max(longest, int((ends - starts).max()))
        head = part[starts]
        plain = plain and not _SPACE[head].any()
        if few:
            # '{' (0x7b) and '[' (0x5b) are the only bytes with b | 0x20 == 0x7b: one pass.
            opener = (part | 0x20) == _CURLY
            extra = int(np.count_nonzero(opener)) - int(np.count_nonzero(head == _CURLY))
            if extra >= FAST_MAX_OPENERS:
                at = np.flatnonzero(opener)
                per_line = np.bincount(np.searchsorted(starts, at, side="right") - 1)
                few = int(per_line.max()) <= FAST_MAX_OPENERS
        lo = hi
    return BlockShape(lines, plain, longest, few)


def json_as_orjson(block: bytearray) -> bool:
    """False if pyarrow's reader may accept a line that orjson refuses (the exact
    path then decides): it takes NaN and Infinity, and bytes that are not UTF-8, in
    fields the fast path ignores. Python's strict decoder refuses what orjson does
    (overlong forms, surrogates, code points past U+10FFFF)."""
    # A one-byte search runs at memchr's speed, a longer one several times slower.
    if (b"N" in block and b"NaN" in block) or (b"I" in block and b"Infinity" in block):
        return False
    if block.isascii():
        return True
    try:
        bytes(block).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
