"""Bounded reading of small CSV uploads (rosters, qualifications).

The standard library's reader raises ``csv.Error`` on a field over its
process-wide limit (131 072 characters) and hands back extra fields of a long
row as a list; both used to end in a 500. :func:`csv_rows` checks the header,
every row's field count and every field's length itself, and reports each
problem as ``line N: field F: …`` (``N`` counts physical lines, the header is
line 1), so an upload gets a 422 and the command line an error naming the row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence

from coverwatch.errors import CoverwatchError

__all__ = ["MAX_CSV_FIELD_CHARS", "CsvInputError", "csv_rows"]

#: The longest field a roster or qualification row may hold (ids are at most 200,
#: times about 30): anything longer is a mistake or an attack.
MAX_CSV_FIELD_CHARS = 1_000


class CsvInputError(CoverwatchError):
    """A CSV upload is malformed; ``problems`` says where (line and field) and why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class _Lines:
    """The text's lines, remembering those of the record being read (for errors)."""

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.record: list[str] = []
        self.line = 0  # the last line read

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.line += 1
        self.record.append(line)
        return line


def csv_rows(text: str, required: Sequence[str], optional: Sequence[str] = ()
             ) -> list[tuple[int, dict[str, str]]]:
    """The rows of ``text`` with their line, by column name (values stripped),
    checked against the header (``required`` and ``optional`` columns, no others)
    and bounded in field length and count. Raises :class:`CsvInputError` listing
    every problem found."""
    lines = _Lines(text.lstrip("\ufeff"))
    reader = csv.reader(lines)
    problems: list[str] = []
    rows: list[tuple[int, dict[str, str]]] = []
    header: list[str] | None = None
    while True:
        lines.record = []
        first = lines.line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            # Only an over-long field (or a stray quote at the end) gets here; the
            # reader has stopped inside the record, so name it and stop too.
            index = _long_field("".join(lines.record))
            name = _name(header, index)
            problems.append(f"line {first}: {name}: " + (
                f"longer than {MAX_CSV_FIELD_CHARS} characters" if index is not None
                else f"not valid CSV ({e})"))
            break
        if header is None:
            header = [h.strip() for h in fields]
            problems += _header_problems(header, required, optional)
            if problems:
                break
            continue
        if not fields:
            continue  # a blank line
        bad = False
        if len(fields) > len(header):
            problems.append(f"line {first}: {len(fields)} fields, but the header names "
                            f"only {len(header)} columns")
            bad = True
        for i, value in enumerate(fields[: len(header)]):
            if len(value) > MAX_CSV_FIELD_CHARS:
                problems.append(f"line {first}: field {header[i]}: longer than "
                                f"{MAX_CSV_FIELD_CHARS} characters")
                bad = True
        if not bad:
            rows.append((first, {h: (fields[i].strip() if i < len(fields) else "")
                                 for i, h in enumerate(header)}))
    if header is None and not problems:
        problems = _header_problems([], required, optional)
    if problems:
        raise CsvInputError(problems)
    return rows


def _header_problems(header: list[str], required: Sequence[str],
                     optional: Sequence[str]) -> list[str]:
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in (*required, *optional)]
    problems = [f"line 1: missing column {c}" for c in missing]
    problems += [f"line 1: unknown column {_short(c)}" for c in unknown]
    problems += [f"line 1: column {c} named twice" for c in sorted(set(header))
                 if c in (*required, *optional) and header.count(c) > 1]
    return problems


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _name(header: list[str] | None, index: int | None) -> str:
    if index is None:
        return "the row"
    if header is None:
        return f"column {index + 1} of the header"
    return f"field {header[index]}" if index < len(header) else f"field {index + 1}"


def _long_field(record: str) -> int | None:
    """The index of the first field of ``record`` (CSV text) longer than the limit."""
    index = length = 0
    quoted = False
    i = 0
    while i < len(record):
        c = record[i]
        if quoted:
            if c == '"':
                if record[i + 1: i + 2] == '"':
                    i += 1
                else:
                    quoted = False
                    i += 1
                    continue
        elif c == '"':
            quoted = True
            i += 1
            continue
        elif c == ",":
            index, length = index + 1, 0
            i += 1
            continue
        elif c in "\r\n":
            break
        length += 1
        if length > MAX_CSV_FIELD_CHARS:
            return index
        i += 1
    return None
