"""The rules for one event record, shared by every input path.

Event files, the batch HTTP API, OsmAnd and MQTT all decode a record to plain
Python values and call :func:`check_record`; so an event means the same thing
however it arrived. Pure: standard library only.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.errors import CoverwatchError

__all__ = [
    "DUTY",
    "EPOCH",
    "FIX",
    "KINDS",
    "MAX_DEPTH",
    "T_LIMIT_S",
    "T_LIMIT_US",
    "T_MAX_US",
    "T_MIN_US",
    "CheckedRecord",
    "EventRecordError",
    "RecordRules",
    "Row",
    "check_record",
    "check_row",
    "event_time",
    "name_problem",
    "nesting_depth",
    "show_value",
]

KINDS = ("duty", "fix", "gate", "flag")
FIX = KINDS.index("fix")
DUTY = KINDS.index("duty")
# Year 10000: anything beyond is a unit mistake, and it keeps µs inside int64.
T_LIMIT_S = 253_402_300_800
T_LIMIT_US = T_LIMIT_S * US_PER_S
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
#: How deep lists and objects may nest in one record (a real one nests 2 deep).
MAX_DEPTH = 16
#: Event times are refused outside [1970, 2200]: beyond is a broken clock or wrong units.
T_MIN_US = 0
T_MAX_US = (_dt.datetime(2201, 1, 1, tzinfo=_dt.UTC) - EPOCH) // _dt.timedelta(microseconds=1)
#: The longest officer id or capability name.
MAX_NAME_CHARS = 200


class EventRecordError(CoverwatchError, ValueError):
    """A record broke a rule; carries the field (or None) and the message."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


_Bad = EventRecordError


@dataclass(frozen=True, slots=True)
class RecordRules:
    """What a record is checked against: the site's gates, flags and origin."""

    gates: frozenset[str]
    posts: frozenset[str]
    flags: frozenset[str]
    origin: tuple[float, float] | None
    # Checkpoint id -> (x, y, accuracy_m): where a scan puts its officer.
    checkpoints: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    # How fast a scan's accuracy grows (m/s): the fix column ``growth`` of a scan row.
    scan_growth: float = 0.0

    @classmethod
    def of(cls, site: Site) -> RecordRules:
        origin = None if site.origin is None else (site.origin.lat, site.origin.lon)
        return cls(
            frozenset(site.gates),
            frozenset(p.id for p in site.posts),
            frozenset(site.flags),
            origin,
            {c.id: (c.at[0], c.at[1], c.accuracy_m) for c in site.checkpoints},
            site.scan_walk_mps,
        )


# A checked record: (kind, t, officer, x, y, lat, lon, accuracy, name, state, capabilities).
# For fixes exactly one of (x, y) and (lat, lon) is set; name is the post or flag.
Row = tuple[
    int, int, str | None, float, float, float, float, float, str | None, bool, frozenset[str]
]
_NAN = math.nan


def nesting_depth(value: object, limit: int = MAX_DEPTH) -> tuple[int, str]:
    """How deep lists and objects nest in ``value`` (a scalar is 0), and the path of
    the deepest one; stops counting past ``limit``. Iterative: no recursion limit."""
    deepest, where = 0, ""
    stack: list[tuple[object, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[tuple[object, str]] = (
                (v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, list | tuple):
            children = ((v, f"{path}[{i}]") for i, v in enumerate(item))
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest, where = depth, path
        if depth > limit:
            break
        stack.extend((v, depth, p) for v, p in children)
    return deepest, where


def _shallow(rec: Mapping[str, Any]) -> bool:
    """True if every value is a scalar or a list of scalars (nesting at most 2).

    Exact types only: anything else (a subclass, a mapping) takes the full walk."""
    for v in rec.values():
        kind = type(v)
        if kind is list:
            if not all(type(e) in _SCALARS for e in v):
                return False
        elif kind not in _SCALARS:
            return False
    return True


_SCALARS = frozenset((str, int, float, bool, type(None)))


def show_value(value: object, budget: int = 80) -> str:
    """A value as the input wrote it, shortened to about ``budget`` characters.

    Iterative, so a hostile value nested thousands deep renders as a prefix
    rather than overflowing the stack.
    """
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= budget else text[: budget - 3] + "..."
    if not isinstance(value, list | dict):
        return repr(value)
    out: list[str] = []
    size = 0
    # A stack of strings to emit and values to render, processed in order.
    todo: list[object] = [value]
    while todo and size <= budget:
        item = todo.pop()
        if isinstance(item, _Text):
            piece = str(item)
        elif isinstance(item, dict):
            parts: list[object] = [_Text("{")]
            for i, (k, v) in enumerate(itertools.islice(item.items(), budget)):
                parts += [_Text(("," if i else "") + json.dumps(str(k)) + ":"), v]
            todo.extend(reversed([*parts, _Text("}")]))
            continue
        elif isinstance(item, list):
            parts = [_Text("[")]
            for i, v in enumerate(itertools.islice(item, budget)):
                parts += [_Text(",")] if i else []
                parts.append(v)
            todo.extend(reversed([*parts, _Text("]")]))
            continue
        elif isinstance(item, str) or item is None or isinstance(item, bool):
            piece = json.dumps(item)
        else:
            piece = str(item)
        out.append(piece)
        size += len(piece)
    text = "".join(out)
    return text if not todo and len(text) <= budget else text[: budget - 3] + "..."


class _Text(str):
    """Punctuation in :func:`show_value`'s work list (not a value to quote)."""

    __slots__ = ()


def _number(rec: Mapping[str, Any], field: str) -> float | None:
    value = rec.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(field, f"expected a number, got {show_value(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _Bad(field, f"number out of range: {value}") from None
    if not math.isfinite(number):
        raise _Bad(field, f"expected a finite number, got {show_value(value)}")
    return number


def _text(rec: Mapping[str, Any], field: str) -> str:
    value = rec.get(field)
    if value is None:
        raise _Bad(field, f"missing {field}")
    if not isinstance(value, str):
        raise _Bad(field, f"expected text, got {show_value(value)}")
    if not value:
        raise _Bad(field, f"{field} is empty")
    problem = name_problem(value)
    if problem is not None:
        raise _Bad(field, f"{field} {show_value(value)} {problem}")
    return value


def _flag_value(rec: Mapping[str, Any], field: str) -> bool:
    value = rec.get(field)
    if value is None:
        raise _Bad(field, f"missing {field}")
    if not isinstance(value, bool):
        raise _Bad(field, f"expected true or false, got {show_value(value)}")
    return value


def _time(value: object) -> int:
    if value is None:
        raise _Bad("t", "missing t")
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise _Bad("t", f"time has no UTC offset: {value.isoformat()}")
        delta = value - EPOCH
        # Not returned at once: a datetime (GPX, Parquet) gets the same year check as text.
        value = (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds
        if not T_MIN_US <= value < T_MAX_US:
            raise _Bad("t", f"time {format_time(value)} is outside the years 1970 to 2200; "
                            "check the device clock (a GPS week rollover?)")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise _Bad("t", f"expected a time, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and (
        not -T_LIMIT_S < value < T_LIMIT_S
    ):
        raise _Bad("t", f"epoch seconds out of range: {value!r}")
    try:
        t = parse_time(value)
    except ValueError as exc:
        raise _Bad("t", str(exc)) from None
    if not -T_LIMIT_US < t < T_LIMIT_US:
        raise _Bad("t", f"time out of range: {show_value(value)}")
    if not T_MIN_US <= t < T_MAX_US:
        raise _Bad("t", f"time {format_time(t)} is outside the years 1970 to 2200; "
                        "check the device clock and the units (seconds, not milliseconds)")
    return t


def event_time(value: object) -> int:
    """A record's ``t`` as µs, by :func:`check_row`'s rule (raises :class:`EventRecordError`)."""
    return _time(value)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an officer id or capability (None if it can).

    Control, zero-width and bidirectional-override characters are refused: they
    make two ids that print alike differ, or reorder what a report shows.
    """
    if len(name) > MAX_NAME_CHARS:
        return f"longer than {MAX_NAME_CHARS} characters"
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        return f"contains the invisible or control character U+{ord(bad):04X}"
    return None


def _capabilities(rec: Mapping[str, Any]) -> frozenset[str]:
    value = rec.get("capabilities")
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(
        isinstance(c, str) and c and name_problem(c) is None for c in value
    ):
        raise _Bad("capabilities", f"expected a list of capability names, got {show_value(value)}")
    return frozenset(value)


def check_row(rec: Mapping[str, Any], rules: RecordRules) -> Row:
    """Validate one record (already decoded to Python values); raises :class:`EventRecordError`."""
    # The usual record (scalars and lists of scalars) nests 2 deep at most: skip the walk.
    depth, where = (0, "") if _shallow(rec) else nesting_depth(rec)
    if depth > MAX_DEPTH:
        raise _Bad(where.split(".")[0].split("[")[0] or None,
                   f"values nest more than {MAX_DEPTH} deep (at {where})")
    kind = rec.get("kind")
    if kind is None:
        raise _Bad("kind", "missing kind")
    if kind == "scan":
        return _scan_row(rec, rules)
    if kind not in KINDS:
        raise _Bad("kind", f"unknown kind {show_value(kind)}; expected one of "
                           f"{', '.join(KINDS)}, scan")
    t = _time(rec.get("t"))
    if kind == "fix":
        officer = _text(rec, "officer")
        x, y = _number(rec, "x"), _number(rec, "y")
        lat, lon = _number(rec, "lat"), _number(rec, "lon")
        accuracy = _number(rec, "accuracy_m")
        if accuracy is None:
            accuracy = 0.0
        elif accuracy < 0:
            raise _Bad("accuracy_m", f"accuracy must be >= 0, got {accuracy:g}")
        has_xy = x is not None or y is not None
        has_ll = lat is not None or lon is not None
        if has_xy and has_ll:
            raise _Bad("x", "give either x/y or lat/lon, not both")
        if has_xy:
            if x is None:
                raise _Bad("x", "missing x (y is given)")
            if y is None:
                raise _Bad("y", "missing y (x is given)")
            return (FIX, t, officer, x, y, _NAN, _NAN, accuracy, None, False, frozenset())
        if not has_ll:
            raise _Bad("x", "a fix needs x/y or lat/lon")
        if lat is None:
            raise _Bad("lat", "missing lat (lon is given)")
        if lon is None:
            raise _Bad("lon", "missing lon (lat is given)")
        if not -90.0 <= lat <= 90.0:
            raise _Bad("lat", f"latitude must be within [-90, 90], got {lat:g}")
        if not -180.0 <= lon <= 180.0:
            raise _Bad("lon", f"longitude must be within [-180, 180], got {lon:g}")
        if rules.origin is None:
            raise _Bad("lat", "lat/lon given but the site has no origin to project from")
        return (FIX, t, officer, _NAN, _NAN, lat, lon, accuracy, None, False, frozenset())
    if kind == "duty":
        officer = _text(rec, "officer")
        on = _flag_value(rec, "on")
        return (DUTY, t, officer, _NAN, _NAN, _NAN, _NAN, 0.0, None, on, _capabilities(rec))
    if kind == "gate":
        post = _text(rec, "post")
        if post not in rules.gates:
            why = "has no gate" if post in rules.posts else "is not a post of this site"
            raise _Bad("post", f"post {post!r} {why}")
        is_open = _flag_value(rec, "open")
        return (KINDS.index("gate"), t, None, _NAN, _NAN, _NAN, _NAN, 0.0, post, is_open,
                frozenset())  # fmt: skip
    flag = _text(rec, "flag")
    if flag not in rules.flags:
        raise _Bad("flag", f"flag {flag!r} is not declared in the site's flags")
    on = _flag_value(rec, "on")
    return (KINDS.index("flag"), t, None, _NAN, _NAN, _NAN, _NAN, 0.0, flag, on, frozenset())




def _scan_row(rec: Mapping[str, Any], rules: RecordRules) -> Row:
    """A checkpoint scan is an exact fix at the checkpoint's surveyed position,
    with the checkpoint's accuracy (docs/tours.md); ``name`` is the checkpoint."""
    t = _time(rec.get("t"))
    officer = _text(rec, "officer")
    checkpoint = _text(rec, "checkpoint")
    where = rules.checkpoints.get(checkpoint)
    if where is None:
        raise _Bad("checkpoint", f"checkpoint {checkpoint!r} is not declared in the site's "
                                 "checkpoints")
    for moved in ("x", "y", "lat", "lon", "accuracy_m"):
        if rec.get(moved) is not None:
            raise _Bad(moved, f"a scan takes its position from the checkpoint; do not give "
                              f"{moved}")
    return (FIX, t, officer, where[0], where[1], _NAN, _NAN, where[2], checkpoint, False,
            frozenset())


class CheckedRecord(NamedTuple):
    """A record that passed :func:`check_record`. Fixes carry either x/y or
    lat/lon (the other pair is NaN); ``name`` is the gate's post or the flag;
    ``state`` is ``on`` (duty, flag) or ``open`` (gate)."""

    kind: str
    t: int
    officer: str | None
    x: float
    y: float
    lat: float
    lon: float
    accuracy: float
    name: str | None
    state: bool
    capabilities: frozenset[str]


def check_record(rec: Mapping[str, Any], rules: RecordRules) -> CheckedRecord:
    """The per-record rules every input path shares (files, HTTP, OsmAnd, MQTT).

    Raises :class:`EventRecordError` (``.field``, ``.message``).
    """
    row = check_row(rec, rules)
    return CheckedRecord(KINDS[row[0]], *row[1:])
