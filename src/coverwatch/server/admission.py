"""Admission to a group commit: every record is checked before it joins one.

A group commit stores many senders' records in one transaction, so one record
the store cannot take (a raw body nested 300 deep, a value of the wrong type)
would fail everybody's. :func:`admit` checks each event row and device report
of one request first, with the store's own serialisation:

* the columns have the types the store keeps (kind, integer time, text names,
  finite numbers or nothing, booleans);
* the kept original (``raw``) nests at most :data:`MAX_DEPTH` deep and takes
  at most :data:`MAX_RAW_BYTES` as JSON. A phone's upload is never refused for
  what it added around a valid position: its original is replaced by a short
  note saying why it was not kept (the fix and the report still count).

A type problem is the sender's (or a bug's): :class:`InvalidEvents` for that
request only. :func:`record_fault` tells a record the store refuses from a
store that cannot commit at all (which must not be blamed on a record).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import psycopg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from coverwatch.domain.records import MAX_DEPTH, nesting_depth
from coverwatch.errors import StoreError
from coverwatch.formats.validation import IngestProblem, InvalidEvents

__all__ = ["MAX_DEPTH", "MAX_RAW_BYTES", "admit", "record_fault"]

#: The most a kept original may take as JSON (a real upload is under 2 KB).
MAX_RAW_BYTES = 64 * 1024

_KINDS = frozenset({"fix", "duty", "gate", "flag"})
_TEXT = ("officer", "post", "flag", "device")
_NUMBERS = ("x", "y", "accuracy")
_FLAGS = ("on", "open")
_INT64 = 2**63 - 1


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _flat(raw: Any) -> bool:
    """True for an object whose values are scalars or lists of scalars (it nests at
    most 2 deep): what a phone or the batch API sends, checked without the full walk.
    Exact types only: anything else takes :func:`nesting_depth`."""
    if type(raw) is not dict:
        return False
    scalars = _SCALARS
    for v in raw.values():
        kind = type(v)
        if kind is list:
            for e in v:
                if type(e) not in scalars:
                    return False
        elif kind not in scalars:
            return False
    return True


def _raw_problem(raw: Any) -> str | None:
    """Why ``raw`` cannot be kept (None: it can)."""
    if not _flat(raw):
        depth, where = nesting_depth(raw)
        if depth > MAX_DEPTH:
            return f"it nests more than {MAX_DEPTH} deep (at {where or 'the top'})"
    try:
        size = len(orjson.dumps(raw))
    except (TypeError, ValueError) as e:  # JSONEncodeError: not JSON (NaN keys, bytes, ...)
        return f"it is not JSON ({e})"
    if size > MAX_RAW_BYTES:
        return f"it takes {size} bytes as JSON (at most {MAX_RAW_BYTES})"
    return None


def _keep_raw(record: dict[str, Any]) -> None:
    raw = record.get("raw")
    if raw is None:
        return
    why = _raw_problem(raw)
    if why is not None:
        record["raw"] = {"not_kept": f"the original was not kept: {why}"}


def _row_problem(row: Mapping[str, Any]) -> tuple[str | None, str] | None:
    # Exact-type tests first (what validation produces), the general ones only
    # when they fail: this runs for every record of every upload.
    get = row.get
    kind = get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        return "kind", "expected fix, duty, gate or flag"
    t = get("t_us")
    if not (type(t) is int and -_INT64 <= t <= _INT64) and (
            not isinstance(t, int) or isinstance(t, bool) or not -_INT64 <= t <= _INT64):
        return "t", "expected a time"
    for name in _TEXT:
        value = get(name)
        if value is not None and type(value) is not str and not isinstance(value, str):
            return name, "expected text"
    isfinite = math.isfinite
    for name in _NUMBERS:
        value = get(name)
        if value is None or (type(value) is float and isfinite(value)):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not isfinite(value):
            return name, "expected a finite number"
    for name in _FLAGS:
        value = get(name)
        if value is not None and value is not True and value is not False:
            return name, "expected true or false"
    caps = get("capabilities")
    if caps is not None and not isinstance(caps, str) and not (
            isinstance(caps, list | tuple) and all(isinstance(c, str) for c in caps)):
        return "capabilities", "expected a list of capability names"
    return None


def _report_problem(rep: Mapping[str, Any]) -> tuple[str | None, str] | None:
    t = rep.get("t_us")
    if t is not None and (not isinstance(t, int) or isinstance(t, bool)
                          or not -_INT64 <= t <= _INT64):
        return "t", "expected a time"
    for name in ("device", "officer", "alarm", "reason"):
        value = rep.get(name)
        if value is not None and not isinstance(value, str):
            return name, "expected text"
    battery = rep.get("battery")
    if battery is not None and (isinstance(battery, bool) or not isinstance(
            battery, int | float) or not math.isfinite(battery)):
        return "battery", "expected a finite number"
    return None


# A fix whose original holds nothing but a plain fix's fields, as ASCII text of at most
# _PLAIN_TEXT characters or floats: it is JSON, nests one deep, and even with every
# character escaped (6 bytes) takes under MAX_RAW_BYTES, so it is admitted without
# encoding it (issue 25: the batch API's usual record).
_PLAIN_RAW_KEYS = frozenset(("t", "kind", "officer", "x", "y", "accuracy_m"))
_PLAIN_TEXT = 1000


def _plain_fix(row: Mapping[str, Any]) -> bool:
    """True for a fix :func:`_row_problem` and :func:`_keep_raw` would pass unchanged,
    told by exact types; False means only "check it the full way"."""
    get = row.get
    t, x, y, acc, raw = get("t_us"), get("x"), get("y"), get("accuracy"), get("raw")
    device = get("device")
    isfinite = math.isfinite
    if not (get("kind") == "fix" and type(t) is int and -_INT64 <= t <= _INT64
            and type(get("officer")) is str and type(x) is float and type(y) is float
            and type(acc) is float and isfinite(x) and isfinite(y) and isfinite(acc)
            and get("post") is None and get("flag") is None and get("on") is None
            and get("open") is None and get("capabilities") is None
            and (device is None or type(device) is str)
            and type(raw) is dict and raw.keys() <= _PLAIN_RAW_KEYS):
        return False
    for v in raw.values():
        if type(v) is not float and not (
                type(v) is str and len(v) <= _PLAIN_TEXT and v.isascii()):
            return False
    return True


def admit(rows: Sequence[dict[str, Any]], reports: Sequence[dict[str, Any]]) -> None:
    """Check one request's rows and reports before they join a group commit.

    Raises :class:`InvalidEvents` (nothing of the request is stored) for a
    value the store cannot keep; an original that cannot be kept is replaced
    in place by a note, so the record itself still counts.
    """
    problems: list[IngestProblem] = []
    plain = _plain_fix
    for i, row in enumerate(rows):
        if plain(row):
            continue
        found = _row_problem(row)
        if found is not None:
            problems.append(IngestProblem(i, *found))
            continue
        _keep_raw(row)
    for i, rep in enumerate(reports):
        found = _report_problem(rep)
        if found is not None:
            problems.append(IngestProblem(i, *found))
            continue
        _keep_raw(rep)
    if problems:
        raise InvalidEvents(problems)


_STORE_TROUBLE = (OperationalError, InterfaceError, psycopg.OperationalError,
                  psycopg.InterfaceError, sqlite3.OperationalError, OSError, TimeoutError)


def record_fault(exc: BaseException) -> bool:
    """Whether a failed commit of one request alone was the record's fault (the store
    refused what it was given), not the store's (cannot commit, locked, gone).

    Only a record's fault may be set aside as a dead letter: a store that cannot
    commit must make the sender try again, never lose what it sent.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _STORE_TROUBLE):
            return False
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return False
        cause = seen.__cause__ or seen.__context__
        if cause is None and type(seen) is StoreError:
            return False  # the store's own word, with nothing to say a record caused it
        seen = cause
    return True
