"""Device reports: every upload from a phone or tracker, used as a fix or not.

Written in the same transaction as the upload's events (see
:meth:`coverwatch.storage.store.Store.append_events`); read here for the
officers view and after a restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from typing import Any

import orjson
from sqlalchemy import func, select

from coverwatch.storage.base import StoreBase
from coverwatch.storage.tables import device_reports

__all__ = ["DeviceReportRepository", "last_reports_of_sites", "report_values",
           "sqlite_insert_reports"]


_REPORT_COLUMNS = ("device", "officer", "t_us", "received_us", "battery", "charging", "alarm",
                   "used", "reason", "source")


def report_values(row: Mapping[str, Any], received: int, site: str) -> dict[str, Any]:
    """A device_reports row; its key is the device, its time and what it said."""
    device = row.get("device")
    if not isinstance(device, str) or not device:
        raise ValueError("a device report needs a device")
    values = {c: row.get(c) for c in _REPORT_COLUMNS}
    values["site"] = site
    values["received_us"] = row.get("received_us", received)
    values["used"] = bool(row.get("used"))
    values["source"] = row.get("source") or "device"
    raw = row.get("raw")
    values["raw"] = None if raw is None else orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode()
    # Without a device time, the arrival time identifies it (a re-send cannot be told apart).
    when = values["t_us"] if values["t_us"] is not None else f"r{values['received_us']}"
    digest = hashlib.sha256((values["raw"] or "").encode()).hexdigest()[:16]
    values["key"] = f"{device}|{when}|{digest}"
    return values


_INSERT_COLUMNS = ("site", "key", *_REPORT_COLUMNS, "raw")
_SQLITE_CHUNK = 500  # rows per statement (13 columns: under SQLite's 32 766 variables)


def sqlite_insert_reports(conn: Any, values: list[dict[str, Any]]) -> dict[str, int]:
    """Insert report rows (from :func:`report_values`) in multi-row statements on the
    driver's cursor, skipping keys already stored; returns key -> id of those inserted.
    SQLAlchemy's statement per row cost more than the insert itself on this hot path."""
    columns = ", ".join(_INSERT_COLUMNS)
    row_sql = "(" + ", ".join("?" * len(_INSERT_COLUMNS)) + ")"
    cursor = conn.connection.driver_connection.cursor()
    try:
        stored: dict[str, int] = {}
        for i in range(0, len(values), _SQLITE_CHUNK):
            chunk = values[i : i + _SQLITE_CHUNK]
            sql = (f"INSERT INTO device_reports ({columns}) VALUES "
                   + ", ".join([row_sql] * len(chunk))
                   + " ON CONFLICT (site, key) DO NOTHING RETURNING id, key")
            flat = [v[c] for v in chunk for c in _INSERT_COLUMNS]
            stored.update((key, int(rid)) for rid, key in cursor.execute(sql, flat).fetchall())
        return stored
    finally:
        cursor.close()


def _out(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    if out.get("raw") is not None:
        out["raw"] = orjson.loads(out["raw"])
    return out


def last_reports_of_sites(engine: Any, sites: Collection[str]
                          ) -> dict[str, dict[str, dict[str, Any]]]:
    """Each device's newest report for each of these sites (store keys): one query,
    whatever the number of sites (the distributed owner's check of silent devices)."""
    out: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in sites}
    if not out:
        return out
    newest = (select(device_reports.c.device, func.max(device_reports.c.id).label("id"))
              .where(device_reports.c.site.in_(list(out)))
              .group_by(device_reports.c.site, device_reports.c.device).subquery())
    q = select(device_reports).join(newest, device_reports.c.id == newest.c.id)
    with engine.connect() as conn:
        for r in conn.execute(q):
            out[r.site][r.device] = _out(r)
    return out


class DeviceReportRepository(StoreBase):
    """Reading device reports."""

    def last_device_reports(self) -> dict[str, dict[str, Any]]:
        """Each device's newest report (by arrival), for the officers view."""
        newest = (select(device_reports.c.device, func.max(device_reports.c.id).label("id"))
                  .where(device_reports.c.site == self.site)
                  .group_by(device_reports.c.device).subquery())
        q = select(device_reports).join(newest, device_reports.c.id == newest.c.id)
        with self.reading() as conn:
            return {r.device: _out(r) for r in conn.execute(q)}

    def device_reports(self, device: str | None = None, limit: int = 100
                       ) -> list[dict[str, Any]]:
        """The newest reports (of one device, or all), newest first."""
        q = (select(device_reports).where(device_reports.c.site == self.site)
             .order_by(device_reports.c.id.desc()).limit(limit))
        if device is not None:
            q = q.where(device_reports.c.device == device)
        with self.reading() as conn:
            return [_out(r) for r in conn.execute(q)]
