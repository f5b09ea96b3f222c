"""Phones and trackers as they really behave: one place that turns what a device
sent into device reports, fixes and alarms.

Every upload from a phone app (OsmAnd protocol: Traccar Client 8/9/10, the
legacy iOS client, OsmAnd; OwnTracks reuses :func:`device_upload`), parsed into
readings by :mod:`coverwatch.formats.osmand` or :mod:`coverwatch.formats.owntracks`, becomes

* one **device report** per reading: the device is alive, its battery, any
  alarm, and, if the reading could not be used as a fix, why not;
* a **fix** record when the reading has a usable position and time, checked by
  the same rules as every other input (:func:`coverwatch.formats.validation.validate_records`);
* nothing else: a phone is never refused for what it measured (a 4xx makes
  Traccar Client retry the same upload forever, stalling every newer one).

Accuracy is never left at 0 (which would overstate cover): the reported
accuracy if above 0, else ``hdop`` (OsmAnd fills it with metres), else the
site's ``default_accuracy_m``; the fix records which (``accuracy_source``,
:func:`coverwatch.formats.accuracy.choose_accuracy`). A reading the phone
marks as simulated (``mock``) is a device report, never a fix.

:class:`DeviceWatch` keeps what the server needs about each device between
uploads: the newest report, upload delay statistics and the per-site watermark
(see docs/semantics.md, "Watermark").
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coverwatch.domain.records import T_LIMIT_S
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.formats.accuracy import choose_accuracy
from coverwatch.formats.osmand import Reading, osmand_time
from coverwatch.formats.validation import InvalidEvents, validate_records
from coverwatch.server.watermark import NewestTimes

__all__ = [
    "ALARM_ALERT_KINDS",
    "MOCK_REASON",
    "DeviceUpload",
    "DeviceWatch",
    "device_upload",
    "fill_accuracy",
    "officer_devices",
    "reporting_only",
    "silent_officers",
]

# Device alarms that raise an alert at once, and the alert kind.
ALARM_ALERT_KINDS = {"sos": "sos", "falldown": "fall", "fall": "fall"}
# Earliest plausible device time: GPS week-rollover bugs report 1999 and 2019-04.
_PLAUSIBLE_FROM_US = parse_time("2001-01-01T00:00:00Z")
#: Why a simulated position never counts (shown on the officer).
MOCK_REASON = "mock location: the phone says this position is simulated, so it does not count"


@dataclass(frozen=True, slots=True)
class DeviceUpload:
    """What one upload becomes: store rows for fixes, device reports, and the reply."""

    rows: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    reply: list[dict[str, Any]]



def fill_accuracy(record: dict[str, Any], site: Site, hdop: float | None = None) -> str:
    """Give a fix record an accuracy that never overstates cover; returns its source.

    The reported ``accuracy_m`` if above 0, else ``hdop`` (metres, as OsmAnd
    sends it) if above 0, else the site's ``default_accuracy_m``: 0 and
    negative values mean "unknown" in the apps that send them.
    """
    record["accuracy_m"], source = choose_accuracy(
        site.default_accuracy_m, reported=record.get("accuracy_m"), hdop_m=hdop)
    return source


def _device_time(r: Reading, received_us: int) -> tuple[int | None, str | None]:
    """The reading's time (µs) and why it cannot be used, if it cannot."""
    if r.time is None or r.time == "":
        return None, None
    value = osmand_time(r.time) if isinstance(r.time, str) else r.time
    try:
        if isinstance(value, bool):
            raise ValueError("a boolean")
        if isinstance(value, int | float) and not -T_LIMIT_S < value < T_LIMIT_S:
            raise ValueError("out of range")
        t = parse_time(value)
    except (ValueError, OverflowError) as e:
        return None, f"time not understood ({e}): {str(r.time)[:40]!r}"
    if t < _PLAUSIBLE_FROM_US:
        return t, f"implausible device time {format_time(t)}; check the device clock"
    return t, None


def device_upload(
    readings: Sequence[Reading], site: Site, *, officer: str, device: str,
    received_us: int, max_future_us: int,
) -> DeviceUpload:
    """Turn readings into fix rows and device reports; never raises for what was measured."""
    rows: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    reply: list[dict[str, Any]] = []
    for r in readings:
        t, why = _device_time(r, received_us)
        reasons = list(r.problems)
        time_source = "device"
        if why is not None:
            reasons.append(why)
        elif t is None:
            t, time_source = received_us, "received"
        elif t > received_us + max_future_us:
            reasons.append(
                f"time {format_time(t)} is {(t - received_us) / US_PER_S:.0f} s ahead of the "
                "server clock; check the device clock")
        if not r.valid:
            reasons.append("the device reports no valid position (valid=false)")
        elif r.mock:
            reasons.append(MOCK_REASON)
        elif (r.lat is None or r.lon is None) and not r.problems:
            reasons.append("no position (a heartbeat)")
        row = None
        if not reasons and t is not None:
            record: dict[str, Any] = {"t": t / US_PER_S, "kind": "fix", "officer": officer,
                                      "lat": r.lat, "lon": r.lon}
            if r.accuracy is not None:
                record["accuracy_m"] = r.accuracy
            source = fill_accuracy(record, site, r.hdop)
            try:
                (row,) = validate_records([record], site, now_us=received_us,
                                          max_future_us=max_future_us)
            except InvalidEvents as e:
                p = e.problems[0]
                reasons.append(f"{p.field}: {p.message}" if p.field else p.message)
            else:
                row["t_us"] = t  # exact, not through float seconds
                row["accuracy_source"] = source
                row["raw"] = {**r.raw, "time_source": time_source}
                rows.append(row)
        reason = "; ".join(reasons) or None
        reports.append({
            "officer": officer, "device": device,
            "t_us": t,
            "battery": r.battery, "charging": r.charging, "alarm": r.alarm,
            "used": row is not None, "reason": reason,
            "raw": {**r.raw, "time_source": time_source},
            "_fix": row,
        })
        reply.append({
            "used_as_fix": row is not None,
            "reason": reason,
            "time": None if t is None else format_time(t),
            "time_source": time_source,
            "accuracy_m": None if row is None else row["accuracy"],
            "accuracy_source": None if row is None else row["accuracy_source"],
            "battery": r.battery,
            "alarm": r.alarm,
        })
    return DeviceUpload(rows, reports, reply)


# -- between uploads -------------------------------------------------------------------


@dataclass(slots=True)
class _Seen:
    officer: str | None
    last_t: int | None = None  # newest device time reported (µs)
    last_received: int = 0
    report: dict[str, Any] | None = None
    alarm: tuple[str, int] | None = None  # the newest alarm and when it arrived
    delays_s: deque[float] = field(default_factory=lambda: deque(maxlen=500))


class DeviceWatch:
    """Each device's newest report, its upload delays, and the site's watermark.

    The watermark (horizon) is ``min`` over active devices of the newest time
    each has reported, kept between ``now - max_lateness`` and ``now - lateness``:
    a phone with steady upload latency up to ``max_lateness`` counts live, and
    when every device reports promptly the horizon trails the clock by only
    ``lateness``. A device is active while it uploaded within ``max_lateness``.
    """

    def __init__(self, lateness_us: int, max_lateness_us: int) -> None:
        self.lateness_us = lateness_us
        self.max_lateness_us = max(max_lateness_us, lateness_us)
        self._seen: dict[str, _Seen] = {}
        self._times = NewestTimes(lateness_us, max_lateness_us, self._current, self._every)

    def _current(self, device: str) -> tuple[int | None, int] | None:
        seen = self._seen.get(device)
        return None if seen is None else (seen.last_t, seen.last_received)

    def _every(self) -> Iterable[tuple[str, tuple[int | None, int]]]:
        return ((d, (s.last_t, s.last_received)) for d, s in self._seen.items())

    def note(self, report: Mapping[str, Any], received_us: int) -> None:
        """Record one stored device report (and the delay of its fix, if it was one)."""
        device = str(report["device"])
        seen = self._seen.get(device)
        if seen is None:
            seen = self._seen[device] = _Seen(report.get("officer"))
        seen.officer = report.get("officer")
        seen.last_received = max(seen.last_received, received_us)
        t = report.get("t_us")
        if isinstance(t, int) and report.get("used"):
            seen.last_t = t if seen.last_t is None else max(seen.last_t, t)
            seen.delays_s.append((received_us - t) / US_PER_S)
        if report.get("alarm"):
            seen.alarm = (str(report["alarm"]), received_us)
        seen.report = {k: v for k, v in report.items() if not k.startswith("_")}
        self._times.noted(device, seen.last_t)

    def load(self, reports: Mapping[str, Mapping[str, Any]]) -> None:
        """Start from the stored newest report of each device (after a restart)."""
        for device, rep in reports.items():
            self._seen[device] = _Seen(rep.get("officer"), None, int(rep["received_us"]),
                                       dict(rep))

    def merge(self, reports: Mapping[str, Mapping[str, Any]]) -> None:
        """Take in stored reports newer than what this watch has seen (distributed mode:
        other nodes received them)."""
        for device, rep in reports.items():
            seen = self._seen.get(device)
            if seen is None:
                seen = self._seen[device] = _Seen(rep.get("officer"))
            if int(rep["received_us"]) > seen.last_received:
                seen.officer = rep.get("officer")
                seen.last_received = int(rep["received_us"])
                seen.report = dict(rep)
                self._times.noted(device, seen.last_t)

    def horizon(self, now_us: int) -> int:
        """The watermark at ``now_us`` (see the class docstring)."""
        self._times.compact(len(self._seen))
        return self._times.horizon(now_us)

    def last_report(self, device: str) -> dict[str, Any] | None:
        seen = self._seen.get(device)
        return None if seen is None else seen.report

    def by_officer(self) -> dict[str, list[tuple[str, _Seen]]]:
        """Every device seen, grouped by officer."""
        out: dict[str, list[tuple[str, _Seen]]] = {}
        for device, seen in self._seen.items():
            if seen.report is not None and seen.officer:
                out.setdefault(seen.officer, []).append((device, seen))
        return out

    def delays(self) -> dict[str, dict[str, float]]:
        """Per device: upload delay (receive time minus fix time) median, 95th pct, max, count."""
        out: dict[str, dict[str, float]] = {}
        for device, seen in self._seen.items():
            d = sorted(seen.delays_s)
            if not d:
                continue
            p95 = d[min(len(d) - 1, math.ceil(0.95 * len(d)) - 1)]
            out[device] = {"count": float(len(d)), "median_s": statistics.median(d),
                           "p95_s": p95, "max_s": d[-1]}
        return out


def _clock_wrong(reason: str | None) -> bool:
    return reason is not None and ("clock" in reason or "time not understood" in reason)


def officer_devices(view: Any, watch: DeviceWatch, now_us: int) -> dict[str, Any]:
    """What an officer's devices say, for the officers view and API.

    ``not_counting`` names why an officer whose device is reporting does not
    count for any rule: off duty, not qualified, stale (no usable fix), clock
    wrong, or not at a post; None if they count or no device is reporting.
    """
    devices: list[dict[str, Any]] = []
    newest: tuple[int, dict[str, Any]] | None = None
    for device, seen in sorted(watch.by_officer().get(view.officer, []), key=lambda d: d[0]):
        rep = seen.report or {}
        received = int(rep.get("received_us") or seen.last_received)
        devices.append({
            "device": device,
            "last_report": format_time(received),
            "last_report_age_s": max(0.0, (now_us - received) / US_PER_S),
            "device_time": None if rep.get("t_us") is None else format_time(int(rep["t_us"])),
            "battery": rep.get("battery"), "charging": rep.get("charging"),
            "used_as_fix": bool(rep.get("used")), "reason": rep.get("reason"),
            "alarm": None if seen.alarm is None else seen.alarm[0],
            "alarm_at": None if seen.alarm is None else format_time(seen.alarm[1]),
            "upload_delay_median_s": (statistics.median(seen.delays_s) if seen.delays_s
                                      else None),
        })
        if newest is None or received > newest[0]:
            newest = (received, rep)
    reason = None
    if newest is not None and not view.rules:
        if _clock_wrong(newest[1].get("reason")):
            reason = "clock wrong"
        elif str(newest[1].get("reason") or "").startswith("mock location"):
            reason = "mock location"
        elif not view.on_duty:
            reason = "off duty"
        elif view.stale:
            reason = "stale"
        elif view.unqualified:
            reason = "not qualified"
        else:
            reason = "not at a post"
    by_time = sorted(devices, key=lambda d: str(d["last_report"]), reverse=True)
    battery = next((d["battery"] for d in by_time if d["battery"] is not None), None)
    return {"device_reports": devices,
            "last_report": by_time[0]["last_report"] if by_time else None,
            "battery": battery, "not_counting": reason}


def reporting_only(views: Sequence[Any], watch: DeviceWatch) -> list[Any]:
    """Officer views for officers whose devices report but who have no event yet."""
    from coverwatch.server.live import OfficerView

    known = {v.officer for v in views}
    return [OfficerView(officer, False, (), None, True, ())
            for officer in sorted(watch.by_officer()) if officer not in known]


def silent_officers(
    shifts: Sequence[Any], watch: DeviceWatch, on_duty: set[str], now_us: int,
    silent_after_us: int,
) -> dict[str, tuple[int, str]]:
    """Rostered officers whose devices have been silent too long: officer -> (since, post).

    An officer counts while a shift of theirs covers ``now_us`` and they are on
    duty or their devices never reported (so an officer whose phone never
    started is caught too). ``since`` is the newest report's arrival, or the
    shift start if none arrived since it began.
    """
    last: dict[str, int] = {}
    for officer, seen in watch.by_officer().items():
        last[officer] = max(s.last_received for _, s in seen)
    out: dict[str, tuple[int, str]] = {}
    for shift in shifts:
        if not shift.covers(now_us) or shift.officer in out:
            continue
        heard = last.get(shift.officer)
        if shift.officer not in on_duty and heard is not None:
            continue
        since = shift.start if heard is None or heard < shift.start else heard
        if now_us - since > silent_after_us:
            out[shift.officer] = (since, shift.post or shift.patrol or "")
    return out
