"""Rosters and qualifications as uploaded: CSV (and one qualification from a form)
parsed into the domain's :class:`~coverwatch.domain.briefing.Shift` and
:class:`~coverwatch.domain.briefing.Qualification`. Every problem is reported
with its line (:class:`BriefingInputError`); the server's briefing service
(:mod:`coverwatch.server.briefing`) decides what may be rostered."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from coverwatch.domain.briefing import Qualification, Shift
from coverwatch.domain.time import parse_time
from coverwatch.errors import CoverwatchError
from coverwatch.formats.csvrows import CsvInputError, csv_rows

__all__ = [
    "BriefingInputError",
    "make_qualification",
    "parse_qualifications_csv",
    "parse_roster_csv",
]


class BriefingInputError(CoverwatchError):
    """A roster or qualification input is malformed; ``problems`` says where and why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _parse_moment(text: str, timezone: str, *, end_of_day: bool) -> int:
    """An ISO time with offset, or a date (start of that day, or with ``end_of_day``
    the start of the next, in the site's time zone)."""
    text = text.strip()
    try:
        day = _dt.date.fromisoformat(text)
    except ValueError:
        return parse_time(text)
    if end_of_day:
        day += _dt.timedelta(days=1)
    moment = _dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
    return parse_time(moment.isoformat())


def _rows(text: str, required: Sequence[str],
          optional: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        return csv_rows(text, required, optional)
    except CsvInputError as e:
        raise BriefingInputError(e.problems) from None


def parse_roster_csv(text: str, timezone: str = "UTC") -> list[Shift]:
    """Shifts from CSV with columns ``officer,post,start,end[,patrol]`` (a header line).

    Give a post or a patrol. Times are ISO-8601 with an offset (or a date: midnight
    in the site's time zone). Every problem is reported with its line.
    """
    shifts: list[Shift] = []
    problems: list[str] = []
    for line, row in _rows(text, ("officer", "post", "start", "end"), ("patrol",)):
        try:
            officer = row["officer"]
            if not officer:
                raise ValueError("officer is empty")
            start = _parse_moment(row["start"], timezone, end_of_day=False)
            end = _parse_moment(row["end"], timezone, end_of_day=False)
            shifts.append(Shift(0, officer, start, end, row["post"] or None,
                                row.get("patrol") or None))
        except ValueError as e:
            problems.append(f"line {line}: {e}")
    if problems:
        raise BriefingInputError(problems)
    return shifts


def parse_qualifications_csv(text: str, timezone: str = "UTC") -> list[Qualification]:
    """Records from CSV with columns ``officer,qualification,valid_until[,valid_from]``.

    A date as ``valid_until`` means valid through that whole day (site time zone).
    """
    out: list[Qualification] = []
    problems: list[str] = []
    rows = _rows(text, ("officer", "qualification", "valid_until"), ("valid_from",))
    for line, row in rows:
        try:
            out.append(make_qualification(row["officer"], row["qualification"], row["valid_until"],
                                      row.get("valid_from") or None, timezone))
        except ValueError as e:
            problems.append(f"line {line}: {e}")
    if problems:
        raise BriefingInputError(problems)
    return out


def make_qualification(officer: str, name: str, valid_until: str, valid_from: str | None,
                   timezone: str) -> Qualification:
    if not officer or not name:
        raise ValueError("officer and qualification must not be empty")
    until = _parse_moment(valid_until, timezone, end_of_day=True)
    since = None if valid_from is None else _parse_moment(valid_from, timezone,
                                                          end_of_day=False)
    if since is not None and since >= until:
        raise ValueError("valid_from must be before valid_until")
    return Qualification(officer, name, until, since)
