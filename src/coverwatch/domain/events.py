"""Events the engine consumes, in columnar form for fixes.

Fixes are the bulk of the input, so they travel as numpy columns
(:class:`FixColumns`). Duty, gate and flag events are rare and travel as small
objects. Every event carries ``seq``, its position in the input (the line
number for files), which breaks ties between events with the same time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "DutyEvent",
    "EventBatch",
    "FixColumns",
    "FlagEvent",
    "GateEvent",
    "OfficerRegistry",
]

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]


class OfficerRegistry:
    """Interns officer ids (strings) as dense integers, in first-seen order."""

    __slots__ = ("_index", "_names")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        for name in names:
            self.intern(name)

    def intern(self, name: str) -> int:
        """Return the integer for ``name``, allocating one if it is new."""
        idx = self._index.get(name)
        if idx is None:
            idx = len(self._names)
            self._index[name] = idx
            self._names.append(name)
        return idx

    def intern_many(self, names: Sequence[str]) -> I32:
        """Intern a sequence of names; returns their integers as an array."""
        return np.fromiter((self.intern(n) for n in names), dtype=np.int32, count=len(names))

    def name(self, idx: int) -> str:
        return self._names[idx]

    def get(self, name: str) -> int | None:
        return self._index.get(name)

    @property
    def names(self) -> Sequence[str]:
        return self._names

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True, slots=True)
class DutyEvent:
    """Puts an officer on or off duty; sets their capabilities."""

    t: int
    officer: int
    on: bool
    capabilities: frozenset[str] = frozenset()
    seq: int = 0


@dataclass(frozen=True, slots=True)
class GateEvent:
    """Opens or closes a post's gate."""

    t: int
    post: str
    open: bool
    seq: int = 0


@dataclass(frozen=True, slots=True)
class FlagEvent:
    """Turns a named site condition on or off."""

    t: int
    flag: str
    on: bool
    seq: int = 0


ControlEvent = DutyEvent | GateEvent | FlagEvent


@dataclass(frozen=True, slots=True)
class FixColumns:
    """Positions, one row per fix, as parallel arrays.

    ``t`` is microseconds since the epoch, ``x``/``y`` are site metres and
    ``accuracy`` is the reported horizontal accuracy in metres (0 if unknown).
    ``growth`` is how fast that accuracy grows after the fix, in m/s: 0 for an
    ordinary fix, the site's walking speed for a scan of a checkpoint (the officer
    may have walked away since). Left out, it is 0 for every fix.
    """

    t: I64
    officer: I32
    x: F64
    y: F64
    accuracy: F64
    seq: I64
    growth: F64 = field(default_factory=lambda: np.empty(0, np.float64))

    def __post_init__(self) -> None:
        n = len(self.t)
        if n and not len(self.growth):
            object.__setattr__(self, "growth", np.zeros(n, np.float64))
        for name in ("officer", "x", "y", "accuracy", "seq", "growth"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"fix column {name} has a different length")

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls) -> FixColumns:
        return cls(
            np.empty(0, np.int64),
            np.empty(0, np.int32),
            np.empty(0, np.float64),
            np.empty(0, np.float64),
            np.empty(0, np.float64),
            np.empty(0, np.int64),
        )

    @classmethod
    def from_rows(
        cls, rows: Sequence[tuple[int, int, float, float, float, int]]
    ) -> FixColumns:
        """Build from ``(t, officer, x, y, accuracy, seq)`` tuples (tests, small inputs)."""
        if not rows:
            return cls.empty()
        t, off, x, y, acc, seq = zip(*rows, strict=True)
        return cls(
            np.asarray(t, np.int64),
            np.asarray(off, np.int32),
            np.asarray(x, np.float64),
            np.asarray(y, np.float64),
            np.asarray(acc, np.float64),
            np.asarray(seq, np.int64),
        )

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> FixColumns:
        """Rows selected by an index array, mask or slice."""
        return FixColumns(
            self.t[index],
            self.officer[index],
            self.x[index],
            self.y[index],
            self.accuracy[index],
            self.seq[index],
            self.growth[index],
        )

    @staticmethod
    def concat(parts: Sequence[FixColumns]) -> FixColumns:
        parts = [p for p in parts if len(p)]
        if not parts:
            return FixColumns.empty()
        if len(parts) == 1:
            return parts[0]
        return FixColumns(
            np.concatenate([p.t for p in parts]),
            np.concatenate([p.officer for p in parts]),
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.accuracy for p in parts]),
            np.concatenate([p.seq for p in parts]),
            np.concatenate([p.growth for p in parts]),
        )


@dataclass(slots=True)
class EventBatch:
    """A chunk of input: fixes as columns plus the rarer control events."""

    fixes: FixColumns = field(default_factory=FixColumns.empty)
    control: list[ControlEvent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.fixes) + len(self.control)

    def time_bounds(self) -> tuple[int, int] | None:
        """(earliest, latest) event time in the batch, or None if it is empty."""
        lo: int | None = None
        hi: int | None = None
        if len(self.fixes):
            lo = int(self.fixes.t.min())
            hi = int(self.fixes.t.max())
        if self.control:
            ts = [ev.t for ev in self.control]  # one pass; min and max in C
            lo = min(ts) if lo is None else min(lo, min(ts))
            hi = max(ts) if hi is None else max(hi, max(ts))
        return None if lo is None or hi is None else (lo, hi)
