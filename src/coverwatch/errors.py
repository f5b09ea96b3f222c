"""The exception tree. Every error coverwatch raises on purpose derives from
:class:`CoverwatchError`, so callers can catch one type.

    CoverwatchError
    ├── SiteFileError        a site file is invalid (carries every problem found)
    ├── EventInputError      an event line or row is malformed (file, line, field)
    ├── OutOfOrderError      input is more out of order than the engine or the
    │                        replay's disorder window allows
    ├── StoreError           persistent storage refused an operation
    └── BusUnavailable       the event stream did not acknowledge (the client sends again)

Each package's own errors derive from it too, beside the built-in type callers
already expect (``EventRecordError(CoverwatchError, ValueError)``, the briefing's,
the bus's ``CheckpointConflict``, the store's ``Fenced``, the pools' ``Busy``, …).
The only exceptions outside the tree are HTTP answers, not errors:
``http.problems.ProblemError`` (a FastAPI ``HTTPException`` carrying a problem
body) and the dashboard's redirects (``web.pages.LoginRequired``, ``PageForbidden``);
``tests/unit/test_architecture.py`` checks this.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BusUnavailable",
    "CoverwatchError",
    "EventInputError",
    "OutOfOrderError",
    "Problem",
    "SiteFileError",
    "StoreError",
]


class CoverwatchError(Exception):
    """Base class of coverwatch's own errors."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in an input file, located as precisely as possible."""

    path: str
    line: int | None
    column: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SiteFileError(CoverwatchError):
    """A site file failed to load or validate. ``problems`` lists every issue."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EventInputError(CoverwatchError):
    """A malformed event. ``line`` is 1-based (a CSV header is line 1)."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str) -> None:
        self.problem = Problem(path, line, None, field, message)
        self.path = path
        self.line = line
        self.field = field
        super().__init__(str(self.problem))


class OutOfOrderError(CoverwatchError):
    """An event arrived earlier than the input's ordering guarantee allows."""


class StoreError(CoverwatchError):
    """The store refused an operation (e.g. a broken audit chain on append)."""


class BusUnavailable(CoverwatchError):
    """The event stream did not acknowledge (distributed mode): the HTTP edge answers 503
    with ``Retry-After: 1`` (:func:`coverwatch.http.problems.install`), and the client sends
    again; the event keys make a resent event one event."""

    def __init__(self) -> None:
        super().__init__("the event stream is unavailable; send again")
