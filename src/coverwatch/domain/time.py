"""Event time: integer microseconds since the Unix epoch, UTC.

Integers keep the semantics exact: a fix at t is fresh until ``t + stale``
with no floating-point rounding at the boundary.
"""

from __future__ import annotations

import datetime as _dt
import math

__all__ = ["US_PER_S", "format_duration", "format_time", "parse_time", "seconds_to_us"]

US_PER_S = 1_000_000
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def seconds_to_us(seconds: float) -> int:
    """Convert a duration or epoch in seconds to whole microseconds (rounded)."""
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite number of seconds: {seconds!r}")
    return round(seconds * US_PER_S)


# Years 1 to 9999 (what datetime can show); beyond is a unit mistake or an attack,
# and it keeps microseconds inside a 64-bit integer.
_LIMIT_US = 253_402_300_800 * US_PER_S


def parse_time(value: object) -> int:
    """Parse an event time: ISO-8601 with an offset, or epoch seconds (a number).

    Raises ``ValueError`` with a short reason on anything else. A naive ISO time
    (no offset) is refused: guessing the zone of evidence is not acceptable.
    """
    t = _parse_time(value)
    if not -_LIMIT_US < t < _LIMIT_US:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(f"time out of range (years 1 to 9999): {shown}")
    return t


def _parse_time(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a time, got a boolean")
    if isinstance(value, int):
        return value * US_PER_S
    if isinstance(value, float):
        return seconds_to_us(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty time")
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if text.lstrip("+-").replace(".", "", 1).isdigit():
                return seconds_to_us(number)
        try:
            moment = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO-8601 time or epoch seconds: {value!r}") from None
        if moment.tzinfo is None:
            raise ValueError(f"time has no UTC offset: {value!r}")
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds
    raise ValueError(f"expected ISO-8601 text or epoch seconds, got {type(value).__name__}")


def format_time(t_us: int) -> str:
    """Format microseconds since the epoch as ISO-8601 UTC ending in ``Z``.

    Whole seconds print without a fraction; otherwise microseconds are shown.
    """
    moment = _EPOCH + _dt.timedelta(microseconds=t_us)
    if moment.year >= 1000:  # isoformat is strftime's text a third of the time (every reply)
        return moment.replace(tzinfo=None).isoformat() + "Z"
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration(seconds: float) -> str:
    """Format a duration for people: ``"45 s"``, ``"12 min 30 s"``, ``"2 h 5 min"``.

    Rounds down to whole seconds (a lapse "for 1 min 9 s" lasted at least that
    long). Zero parts at the end are left out (``"2 min"``, ``"1 h"``); above an
    hour seconds are dropped, above a day minutes are dropped.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {seconds!r}")
    total = int(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [(days, "d"), (hours, "h")]
    elif hours:
        parts = [(hours, "h"), (minutes, "min")]
    elif minutes:
        parts = [(minutes, "min"), (secs, "s")]
    else:
        return f"{secs} s"
    head, tail = parts
    text = f"{head[0]} {head[1]}"
    if tail[0]:
        text += f" {tail[0]} {tail[1]}"
    return text
