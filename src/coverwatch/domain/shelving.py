"""Shelving (ISA-18.2 / EEMUA 191): a person hides an alert, or a post's alerts, from
notification for a set time, with a reason. Pure rules; the server stores and audits.

An SOS, a fall and the server's own alerts are never shelved: they must reach a
person. A shelf ends by itself at ``until``; steps due while shelved are not sent
(the alert stays on the board, marked shelved), later levels are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from coverwatch.domain.alerts import DEVICE_ALARM_KINDS, DIRECT_KINDS
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.errors import CoverwatchError

__all__ = ["MAX_SHELF_MIN", "Shelf", "ShelfBook", "ShelvingError", "make_shelf", "may_shelve"]

MAX_SHELF_MIN = 8 * 60  # one shift at most: a shelf must not outlive who set it


class ShelvingError(CoverwatchError):
    """A shelf that may not be set (no reason, a bad duration, an SOS)."""


@dataclass(frozen=True, slots=True)
class Shelf:
    """``subject`` is ``alert:<id>`` or ``post:<id>``."""

    subject: str
    reason: str
    by: str
    at: int
    until: int

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "reason": self.reason, "by": self.by,
                "at": format_time(self.at), "until": format_time(self.until),
                "until_ms": self.until // 1000}


def may_shelve(kind: str) -> bool:
    """Whether alerts of this kind may be shelved at all."""
    return kind not in DEVICE_ALARM_KINDS and kind not in DIRECT_KINDS


def make_shelf(subject: str, minutes: float, reason: str, by: str, now: int) -> Shelf:
    """A shelf from ``now`` for ``minutes``; refuses a missing reason or a bad duration."""
    if not reason.strip() or len(reason.strip()) < 3:
        raise ShelvingError("reason: shelving needs a reason (at least 3 characters)")
    if not 1 <= minutes <= MAX_SHELF_MIN:
        raise ShelvingError(f"minutes: must be 1 to {MAX_SHELF_MIN}, got {minutes}")
    if not by:
        raise ShelvingError("shelving needs a named user")
    return Shelf(subject, reason.strip(), by, now, now + int(minutes * 60 * US_PER_S))


class ShelfBook:
    """The shelves set; the latest per subject counts."""

    def __init__(self, shelves: Iterable[Shelf] = ()) -> None:
        self._by: dict[str, Shelf] = {}
        for shelf in shelves:
            self.add(shelf)

    def add(self, shelf: Shelf) -> None:
        self._by[shelf.subject] = shelf

    def remove(self, subject: str) -> Shelf | None:
        return self._by.pop(subject, None)

    def holding(self, alert_id: str, kind: str, post: str, now: int) -> Shelf | None:
        """The shelf that holds this alert now, if any (never an SOS or the server's own)."""
        if not may_shelve(kind):
            return None
        for subject in (f"alert:{alert_id}", f"post:{post}"):
            shelf = self._by.get(subject)
            if shelf is not None and shelf.at <= now < shelf.until:
                return shelf
        return None

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self._by.values()]

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> ShelfBook:
        return cls(Shelf(str(r["subject"]), str(r["reason"]), str(r["by"]), int(r["at"]),
                         int(r["until"])) for r in records)
