"""What a site's start reads from the store, read for many sites at once.

A server of many sites starts each from its stored state (server/handlers/startup.py).
Read site by site, that is some fifteen transactions a site; :func:`read_starts` reads the
same rows for a batch of sites in one transaction, one query per table, and hands each
site a :class:`SiteStart` that answers the start's reads as the store would (same names,
same order, same records). A start without one reads the store itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine, and_, func, literal_column, or_, select

from coverwatch.domain.briefing import Qualification, Shift
from coverwatch.storage.briefing import Acknowledgement, OrdersVersion, _ack, _qualification, _shift
from coverwatch.storage.deliveries import DeliveryRecord, _delivery
from coverwatch.storage.devicereports import _out
from coverwatch.storage.eventrows import event_dict
from coverwatch.storage.tables import (
    alerts,
    deliveries,
    device_reports,
    dispatches,
    events,
    incidents,
    orders_acknowledgements,
    orders_versions,
    qualifications,
    roster_shifts,
    server_state,
)

__all__ = ["BATCH", "SiteStart", "events_after", "read_starts"]

# Sites read per transaction: bounded memory, and well under SQLite's bound variables.
BATCH = 200


@dataclass
class SiteStart:
    """One site's stored state as a start reads it (see the module docstring)."""

    state: dict[str, str] = field(default_factory=dict)
    alerts: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    shifts: list[Shift] = field(default_factory=list)
    qualifications: list[Qualification] = field(default_factory=list)
    versions: list[OrdersVersion] = field(default_factory=list)
    acks: list[Acknowledgement] = field(default_factory=list)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    # The store's read methods the start calls, answered from the rows read.
    def get_state(self, key: str) -> str | None:
        return self.state.get(key)

    def load_alerts(self) -> list[dict[str, Any]]:
        return [r for _, _, r in self.alerts]

    def load_held_alerts(self, newest: int) -> tuple[list[dict[str, Any]], int | None]:
        """As ``Store.load_held_alerts``: the alerts not closed and the ``newest`` last
        raised, and the time from which every alert is among them (None: all are)."""
        last = sorted(self.alerts, key=lambda a: (a[1], str(a[2]["id"])), reverse=True)[:newest]
        held = {r["id"]: r for state, _, r in self.alerts if state != "closed"}
        held.update((r["id"], r) for _, _, r in last)
        since = None if len(last) < newest else last[-1][1] + 1
        return sorted(held.values(), key=lambda r: (r["alert_at"], r["id"])), since

    def load_deliveries(self) -> list[DeliveryRecord]:
        return list(self.deliveries)

    def load_dispatches(self) -> list[dict[str, Any]]:
        return list(self.dispatches)

    def load_incidents(self, since_us: int | None = None) -> list[dict[str, Any]]:
        return [r for started, r in self.incidents if since_us is None or started >= since_us]

    def list_shifts(self) -> list[Shift]:
        return list(self.shifts)

    def list_qualifications(self) -> list[Qualification]:
        return list(self.qualifications)

    def orders_versions(self) -> list[OrdersVersion]:
        return list(self.versions)

    def acknowledgements(self) -> list[Acknowledgement]:
        return list(self.acks)

    def last_device_reports(self) -> dict[str, dict[str, Any]]:
        return dict(self.reports)


def _read_batch(conn: Any, keys: Sequence[str], out: dict[str, SiteStart],
                alerts_only: bool = False) -> None:
    # Each query: every row of these sites, in the order the store's own reads give.
    for r in conn.execute(select(alerts.c.site, alerts.c.state, alerts.c.alert_at_us,
                                 alerts.c.record).where(alerts.c.site.in_(keys))
                          .order_by(alerts.c.site, alerts.c.alert_at_us, alerts.c.id)):
        out[r.site].alerts.append((r.state, int(r.alert_at_us), orjson.loads(r.record)))
    if alerts_only:
        return
    for r in conn.execute(select(server_state.c.site, server_state.c.key, server_state.c.value)
                          .where(server_state.c.site.in_(keys))):
        out[r.site].state[r.key] = str(r.value)
    for r in conn.execute(select(deliveries).where(deliveries.c.site.in_(keys))
                          .order_by(deliveries.c.id)):
        out[r.site].deliveries.append(_delivery(r))
    for r in conn.execute(select(dispatches).where(dispatches.c.site.in_(keys))
                          .order_by(dispatches.c.id)):
        out[r.site].dispatches.append(dict(r._mapping))
    for r in conn.execute(select(incidents.c.site, incidents.c.started_us, incidents.c.record)
                          .where(incidents.c.site.in_(keys))
                          .order_by(incidents.c.started_us, incidents.c.id)):
        out[r.site].incidents.append((int(r.started_us), orjson.loads(r.record)))
    for r in conn.execute(select(roster_shifts).where(roster_shifts.c.site.in_(keys))
                          .order_by(roster_shifts.c.start_us, roster_shifts.c.id)):
        out[r.site].shifts.append(_shift(r))
    for r in conn.execute(select(qualifications).where(qualifications.c.site.in_(keys))
                          .order_by(qualifications.c.officer, qualifications.c.name)):
        out[r.site].qualifications.append(_qualification(r))
    for r in conn.execute(select(orders_versions).where(orders_versions.c.site.in_(keys))
                          .order_by(orders_versions.c.post, orders_versions.c.since_us)):
        out[r.site].versions.append(OrdersVersion(
            r.post, r.version, int(r.since_us), r.text,
            None if r.changes is None else tuple(orjson.loads(r.changes))))
    acks = orders_acknowledgements
    for r in conn.execute(select(acks).where(acks.c.site.in_(keys))
                          .order_by(acks.c.at_us, acks.c.id)):
        out[r.site].acks.append(_ack(r))
    newest = (select(func.max(device_reports.c.id).label("id"))
              .where(device_reports.c.site.in_(keys))
              .group_by(device_reports.c.site, device_reports.c.device).subquery())
    for r in conn.execute(select(device_reports)
                          .join(newest, device_reports.c.id == newest.c.id)):
        out[r.site].reports[r.device] = _out(r)


def read_starts(engine: Engine, keys: Collection[str], batch: int = BATCH, *,
                alerts_only: bool = False) -> dict[str, SiteStart]:
    """Each site's (store key's) :class:`SiteStart`: one transaction per ``batch`` sites
    (``alerts_only``: their alerts and nothing else, for an alert book's refresh)."""
    out = {k: SiteStart() for k in keys}
    ordered = list(out)
    for i in range(0, len(ordered), batch):
        with engine.connect() as conn, conn.begin():
            _read_batch(conn, ordered[i : i + batch], out, alerts_only)
    return out


def events_after(engine: Engine, after: Mapping[str, int], limit: int
                 ) -> tuple[dict[str, list[dict[str, Any]]], bool]:
    """Each site's (store key's) stored events with id above ``after[key]``, in id order,
    in one query for them all, and whether that is all of them: at most ``limit`` rows
    are read, and when that many came each site may have more after its last (read them
    from the store)."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in after}
    if not after:
        return out, True
    # On SQLite "+site" keeps the plan to the id range, as Store.events_since does.
    site = literal_column("+site") if engine.dialect.name == "sqlite" else events.c.site
    q = (select(events).where(events.c.id > min(after.values()),
                              or_(*(and_(site == k, events.c.id > a) for k, a in after.items())))
         .order_by(events.c.id).limit(limit))
    n = 0
    with engine.connect() as conn, conn.begin():
        for r in conn.execute(q):
            row = event_dict(r)
            out[str(row["site"])].append(row)
            n += 1
    return out, n < limit
