"""Who was notified about an alert: the recorded deliveries (table ``deliveries``), never
the escalation policy's targets or the level an alert was due to reach.

A person counts as notified only through a delivery whose outcome is ``delivered``;
failed attempts are kept and shown as failed. Shared by the evidence pack (its
``deliveries.json`` member and PDF) and the daily activity report (CSV and PDF).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from coverwatch.domain.time import format_time
from coverwatch.storage import DeliveryRecord, Store

__all__ = ["delivery_rows", "level_label", "load_delivery_rows", "summary", "who"]


def delivery_rows(records: Iterable[DeliveryRecord]) -> list[dict[str, Any]]:
    """Deliveries as JSON-ready rows, in the order they were recorded."""
    return [{**r.to_json(), "at": format_time(r.at_us)} for r in records]


def load_delivery_rows(store: Store, alert_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The stored deliveries of these alerts (every purpose), oldest first."""
    return delivery_rows(store.load_deliveries(list(alert_ids))) if alert_ids else []


def level_label(row: dict[str, Any]) -> str:
    """Escalation levels count from 1, as the site file lists them; others say what they were."""
    if row["purpose"] == "escalation":
        return str(int(row["level"]) + 1)
    return str(row["purpose"])


def who(row: dict[str, Any]) -> str:
    """The person reached, else the (redacted) address, else the policy target."""
    return str(row.get("person") or row.get("address") or row.get("target") or "-")


def summary(rows: Iterable[dict[str, Any]], outcome: str) -> str:
    """``"sam (level 1), jo (level 2)"``: one alert's deliveries with that outcome."""
    seen: list[str] = []
    for r in rows:
        if r["outcome"] != outcome:
            continue
        label = level_label(r)
        text = f"{who(r)} ({'level ' + label if label.isdigit() else label})"
        if outcome == "failed" and r.get("error"):
            text = f"{text[:-1]}: {r['error']})"
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)
