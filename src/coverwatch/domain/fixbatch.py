"""A request's plain fixes as columns (issue 25): what the batch API's usual body becomes.

A batch of thousands of fixes, each with only ``t``, ``kind``, ``officer``, ``x``, ``y`` and
``accuracy_m``, is checked, keyed, stored and fed to the engine column by column, with no
dict per row on the way. Anything else in a request (duty, an alarm, a device's upload, a
late fix) takes the row path; :meth:`FixBatch.rows` gives the rows that path would have
made from the same records, so either path stores the same events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FixBatch"]


@dataclass(slots=True)
class FixBatch:
    """Plain fixes of one or more requests of one source, as columns, in arrival order.

    ``reported``: whether the fix gave ``accuracy_m`` (``accuracy`` is 0.0 where not).
    ``raw`` are the originals (kept as sent); ``keys`` and ``raw_json`` (their idempotence
    keys and stored text) are filled off the event loop before the commit. ``parts``:
    (request index, fixes) of each request merged in, in order.
    """

    t_us: list[int]
    officer: list[str]
    x: list[float]
    y: list[float]
    accuracy: list[float]
    reported: list[bool]
    raw: list[dict[str, Any]]
    source: str = "http"
    keys: list[str] = field(default_factory=list)
    raw_json: list[str] = field(default_factory=list)
    parts: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.t_us)

    def rows(self) -> list[dict[str, Any]]:
        """The store rows :func:`~coverwatch.formats.validation.validate_records` makes of
        the same records (the row path's input)."""
        return [
            {"kind": "fix", "accuracy_source": "reported" if rep else "none", "t_us": t,
             "officer": o, "x": x, "y": y, "accuracy": a, "post": None, "flag": None,
             "on": None, "open": None, "capabilities": None, "raw": dict(raw)}
            for t, o, x, y, a, rep, raw in zip(self.t_us, self.officer, self.x, self.y,
                                               self.accuracy, self.reported, self.raw,
                                               strict=True)]

    @staticmethod
    def concat(batches: Sequence[tuple[int, FixBatch]]) -> FixBatch:
        """One batch of several requests' (request index, batch), keyed, in that order."""
        if len(batches) == 1:
            i, only = batches[0]
            only.parts = [(i, len(only))]
            return only
        out = FixBatch([], [], [], [], [], [], [], batches[0][1].source)
        for i, b in batches:
            out.t_us += b.t_us
            out.officer += b.officer
            out.x += b.x
            out.y += b.y
            out.accuracy += b.accuracy
            out.reported += b.reported
            out.raw += b.raw
            out.keys += b.keys
            out.raw_json += b.raw_json
            out.parts.append((i, len(b)))
        return out
