"""Late arrivals: events that came behind the live horizon, per device and per site.

The live cover notes each one here (the most recent few thousand), so the
control room and the all-sites board can say that events are arriving late,
from which device and how late. A late state event (duty, gate, flag) that was
applied live also carries the horizon it took effect at; see docs/semantics.md,
"Late state events".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coverwatch.domain.time import US_PER_S, format_time

__all__ = ["STATE_KINDS", "WINDOW_S", "LateArrival", "LateArrivals", "late_applied_message",
           "subject_of"]

# The kinds whose events change state the engine carries (a qualification's expiry
# is a duty event that re-states capabilities).
STATE_KINDS = frozenset({"duty", "gate", "flag"})
WINDOW_S = 600  # "late in the last 10 min"
_KEEP = 2000  # per site, in memory and in a distributed owner's checkpoint


def subject_of(row: Mapping[str, Any]) -> tuple[str, str]:
    """What a state event is about: (kind, officer / post / flag)."""
    kind = str(row["kind"])
    name = row["officer"] if kind == "duty" else row["post"] if kind == "gate" else row["flag"]
    return kind, str(name)


def _sender(row: Mapping[str, Any]) -> str:
    device = row.get("device")
    return str(device) if device else f"({row.get('source') or 'unknown'})"


@dataclass(frozen=True, slots=True)
class LateArrival:
    """One event stored behind the horizon."""

    kind: str
    subject: str
    sender: str  # the device, or "(source)" for a sender without one (API token, roster)
    t_us: int
    received_us: int
    # The horizon a late state event took effect at live; None: a fix (an old position
    # is not a current one) or superseded by a newer event about the same thing.
    applied_us: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], received_us: int) -> LateArrival:
        kind = str(row["kind"])
        subject = subject_of(row)[1] if kind in STATE_KINDS else str(row.get("officer"))
        applied = row.get("applied_us")
        return cls(kind, subject, _sender(row), int(row["t_us"]), received_us,
                   None if applied is None else int(applied))

    @property
    def lag_s(self) -> float:
        return max(0, self.received_us - self.t_us) / US_PER_S

    def to_json(self) -> dict[str, Any]:
        if self.applied_us is not None:
            what = "applied late"
        elif self.kind in STATE_KINDS:
            what = "superseded (a newer event was already in)"
        else:
            what = "not applied live (an old position is not a current one)"
        return {"kind": self.kind, "subject": self.subject, "device": self.sender,
                "time": format_time(self.t_us), "received": format_time(self.received_us),
                "lag_s": round(self.lag_s, 1), "live": what,
                "applied": None if self.applied_us is None else format_time(self.applied_us)}


class LateArrivals:
    """The recent late arrivals of one site, and totals since the start."""

    def __init__(self) -> None:
        self._recent: deque[LateArrival] = deque(maxlen=_KEEP)
        self.total = 0
        self.applied = 0

    def note(self, arrival: LateArrival) -> None:
        self._recent.append(arrival)
        self.total += 1
        self.applied += arrival.applied_us is not None

    def forget_before(self, received_us: int) -> None:
        """Drop arrivals received before ``received_us`` (a checkpoint stays small)."""
        while self._recent and self._recent[0].received_us < received_us:
            self._recent.popleft()

    def summary(self, now_us: int, window_s: int = WINDOW_S) -> dict[str, Any]:
        """Late arrivals received in the last ``window_s``: counts, per device, the latest."""
        since = now_us - window_s * US_PER_S
        recent = [a for a in self._recent if a.received_us > since]
        devices: dict[str, dict[str, Any]] = {}
        for a in recent:
            d = devices.setdefault(a.sender, {"device": a.sender, "count": 0, "max_lag_s": 0.0})
            d["count"] += 1
            d["max_lag_s"] = round(max(d["max_lag_s"], a.lag_s), 1)
            d["latest_lag_s"] = round(a.lag_s, 1)
            d["last_received"] = format_time(a.received_us)
        per_device = sorted(devices.values(), key=lambda d: (-d["count"], d["device"]))
        applied = [a for a in recent if a.applied_us is not None]
        text = ""
        if recent:
            worst = max(per_device, key=lambda d: (d["max_lag_s"], d["count"]))
            who = worst["device"]
            who = f"sender {who}" if who.startswith("(") else f"device {who}"
            text = (f"{len(recent)} late in the last {window_s // 60} min, {who} "
                    f"up to {worst['max_lag_s']:g} s")
            if applied:
                text += f"; {len(applied)} state change{'s' * (len(applied) > 1)} applied late"
        return {"window_s": window_s, "count": len(recent), "applied": len(applied),
                "latest_lag_s": round(recent[-1].lag_s, 1) if recent else None,
                "devices": per_device, "applied_late": [a.to_json() for a in applied[-10:]],
                "total": self.total, "total_applied": self.applied, "text": text}


def late_applied_message(row: Mapping[str, Any]) -> dict[str, Any]:
    """The live feed's message for a late state event applied at the horizon."""
    arrival = LateArrival.from_row(row, int(row.get("received_us") or row["applied_us"]))
    return {"type": "late-applied", **arrival.to_json()}
