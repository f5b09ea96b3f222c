"""A device alarm (SOS, fall) as an alert: decided from the report alone (pure; the
officer's last known position is looked up by the caller)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coverwatch.domain.alerts import Alert, alert_id_for
from coverwatch.domain.time import US_PER_S, format_time

__all__ = ["alarm_alert"]

_BUFFERED_US = 7 * 86_400 * US_PER_S  # the longest an SOS waits on an offline phone


def alarm_alert(kind: str, report: Mapping[str, Any],
                position: Mapping[str, Any] | None) -> Alert:
    """The ``kind`` alert (sos, fall) a device report raises, received at its
    ``received_us``; it began when the button was pressed, if that time is plausible."""
    officer = report["officer"]
    received = int(report["received_us"])
    t = report.get("t_us")
    # An SOS buffered on an offline phone began when it was pressed.
    plausible = isinstance(t, int) and received - _BUFFERED_US <= t <= received
    began = t if plausible and isinstance(t, int) else received
    rule = f"officer:{officer}"
    return Alert(
        id=alert_id_for(kind, "", rule, began), kind=kind, post="", rule=rule,
        lapse_start=began, alert_at=received, count=0, need=0,
        details={"officer": officer, "device": report.get("device"),
                 "alarm": report.get("alarm"),
                 "event_time": None if t is None else format_time(int(t)),
                 "received": format_time(received),
                 "position": None if position is None else dict(position),
                 "battery": report.get("battery")},
    )
