"""Events (fixes, duty, gate and flag changes): stored once each, in one
transaction with the device reports and alerts that came with them, and read
back in id order (the live stream) or in time order (reports and replays).

Every method is one transaction, committed before it returns, so an
acknowledged event is durable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import false, func, literal_column, select, text, true, update
from sqlalchemy.exc import SQLAlchemyError

from coverwatch.domain.fixbatch import FixBatch
from coverwatch.errors import StoreError
from coverwatch.storage.alerts import AlertRepository
from coverwatch.storage.base import dialect_insert, now_us
from coverwatch.storage.devicereports import report_values, sqlite_insert_reports
from coverwatch.storage.devices import CredentialsChanged, Device, stale_tokens
from coverwatch.storage.eventrows import (
    RECEIVED_US,
    T_US,
    InvalidEventError,
    event_dict,
    event_rows,
    fix_params,
    key_times,
    postgresql_append,
    sqlite_append,
    sqlite_append_fixes,
)
from coverwatch.storage.tables import device_reports, events
from coverwatch.storage.tlog import append_event_leaves

__all__ = ["AppendResult", "EventRepository", "ReportAlert"]

# Officers named in one IN list (well under SQLite's 32 766 bound parameters).
_IN_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one :meth:`Store.append_events` call stored.

    ``rows`` are the stored input rows (copies, with ``"id"`` set) in id order;
    ``ids`` are their ids. Re-sent events (a key already stored, or repeated
    within the batch after its first occurrence) are only counted in ``duplicates``.
    """

    inserted: int
    duplicates: int
    ids: list[int]
    rows: list[dict[str, Any]]
    # Device reports stored (not re-sent ones), with "id" set, and alert records raised.
    reports: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReportAlert:
    """An alert record a device report raises (an SOS), with its audit action: stored in
    the report's transaction, and only if that report is new there (a re-sent SOS
    raises nothing)."""

    report: int  # the report's index among those given
    record: dict[str, Any]
    action: str = "alert.raised"


class EventRepository(AlertRepository):
    """Events of the store's site (an SOS report raises its alert in the same commit)."""

    def append_events(
        self, rows: Sequence[Mapping[str, Any]], *,
        reports: Sequence[Mapping[str, Any]] = (), alerts: Sequence[ReportAlert] = (),
        held: Mapping[str, Device] | None = None,
    ) -> AppendResult:
        """Store events in one transaction; re-sent events (same key) are skipped.

        Each row has ``kind`` (fix, duty, gate, flag), ``t_us``, ``source`` and
        the kind's fields (fix: officer, x, y, accuracy; duty: officer, on,
        capabilities; gate: post, open; flag: flag, on), optionally ``device``,
        ``received_us`` (default: now), ``late`` and ``raw`` (any JSON value).
        Returns the stored rows (copies of the given dicts with ``"id"`` set)
        and their ids, in id order; see :class:`AppendResult`.

        ``reports`` are device reports (see ``device_reports``) stored in the
        same transaction; a re-sent one (same key) is skipped. ``alerts`` are
        alert records the reports raise, saved and audited in that same
        transaction where their report is newly stored (an SOS is durable with
        its report before the device is answered); an alert already stored is
        kept as is.

        ``held`` (token hash -> device) are the device tokens the rows came with,
        checked first inside the same transaction: if any is no longer held as it
        was (revoked, rotated, reassigned), nothing is stored and
        :class:`CredentialsChanged` names them.
        """
        if not rows and not reports:
            return AppendResult(0, 0, [], [])
        received = now_us()
        params = event_rows(rows, received, self.site)
        try:
            values_of_reports = [report_values(r, received, self.site) for r in reports]
        except ValueError as e:
            raise InvalidEventError(str(e)) from None
        append = postgresql_append if self.dialect == "postgresql" else sqlite_append
        writer = self._audit_write if alerts else self._write
        new_reports: list[dict[str, Any]] = []
        new_at: set[int] = set()  # the indexes of the reports newly stored
        raised: list[dict[str, Any]] = []
        try:
            with writer() as conn:
                if held:
                    stale = stale_tokens(conn, held)
                    if stale:
                        raise CredentialsChanged(stale)
                stored = append(conn, params) if params else []
                if stored:
                    # Report checkpoints after the earliest new event no longer hold.
                    earliest = min([p[T_US] for p in params])
                    if self.after_append is not None:  # the bus outbox
                        self.after_append(conn, stored, earliest)
                    # Driver SQL, once per commit group: the Core DELETE's build and
                    # compile cost about 0.2 ms, far more than the delete itself.
                    mark = "?" if self.dialect == "sqlite" else "%s"
                    conn.exec_driver_sql("DELETE FROM engine_checkpoints WHERE site = "
                                         f"{mark} AND at_us > {mark}", (self.site, earliest))
                if self.dialect == "sqlite":
                    report_ids = sqlite_insert_reports(conn, values_of_reports) \
                        if values_of_reports else {}
                    for at, (given, values) in enumerate(zip(reports, values_of_reports,
                                                             strict=True)):
                        got = report_ids.pop(values["key"], None)  # a repeated key: the first
                        if got is not None:
                            new_at.add(at)
                            new_reports.append({**given, **values, "id": got,
                                                "raw": given.get("raw")})
                else:
                    for at, (given, values) in enumerate(zip(reports, values_of_reports,
                                                             strict=True)):
                        insert = dialect_insert(self.dialect)(device_reports).values(**values)
                        got = conn.execute(insert.on_conflict_do_nothing(
                            index_elements=[device_reports.c.site, device_reports.c.key]
                        ).returning(device_reports.c.id)
                        ).scalar()
                        if got is not None:
                            new_at.add(at)
                            new_reports.append({**given, **values, "id": int(got),
                                                "raw": given.get("raw")})
                # The transparency log: each event's leaf binds its arrival as stored (the
                # batch's first row of a key is the one stored).
                arrival = {p[2]: p[RECEIVED_US] for p in reversed(params)}
                append_event_leaves(conn, self.site, stored, new_reports, arrival)
                for alert in alerts:
                    if alert.report in new_at and \
                            self._insert_alert_locked(conn, alert.record, alert.action):
                        raised.append(alert.record)
        except (SQLAlchemyError, psycopg.Error, sqlite3.Error) as exc:
            raise StoreError(f"could not store {len(params)} events: {exc}") from exc
        stored.sort()
        ids = [event_id for event_id, _ in stored]
        if len(stored) == len(params) and all(
                s[1] == p[2] for s, p in zip(stored, params, strict=True)):
            # Every row stored, in the order given (the usual batch): no key lookups.
            out = [{**row, "id": event_id} for row, event_id in zip(rows, ids, strict=True)]
        else:
            # Each stored key is its first occurrence in the batch (reversed: first wins).
            first = {p[2]: i for i, p in reversed(list(enumerate(params)))}
            out = [{**rows[first[key]], "id": event_id} for event_id, key in stored]
        return AppendResult(len(ids), len(params) - len(ids), ids, out, new_reports, raised)

    def append_fixes(self, batch: FixBatch, received: int) -> list[tuple[int, str]]:
        """:meth:`append_events` of a keyed batch of plain on-time fixes, column by column
        (issue 25): the same rows, keys and leaves in one transaction, all with one arrival,
        ``received``. Returns the stored ``(id, key)``, in id order (a re-sent key, or one
        repeated in the batch after its first, is skipped)."""
        n = len(batch)
        try:
            with self._write() as conn:
                if self.dialect == "sqlite":
                    stored = sqlite_append_fixes(conn, batch, received, self.site)
                else:
                    flat = fix_params(batch, received, self.site)
                    width = len(flat) // n
                    stored = postgresql_append(
                        conn, [tuple(flat[i:i + width]) for i in range(0, len(flat), width)])
                if stored:
                    earliest = min(batch.t_us)
                    if self.after_append is not None:  # the bus outbox
                        self.after_append(conn, stored, earliest)
                    mark = "?" if self.dialect == "sqlite" else "%s"
                    conn.exec_driver_sql("DELETE FROM engine_checkpoints WHERE site = "
                                         f"{mark} AND at_us > {mark}", (self.site, earliest))
                append_event_leaves(conn, self.site, stored, (), received)
        except (SQLAlchemyError, psycopg.Error, sqlite3.Error) as exc:
            raise StoreError(f"could not store {n} events: {exc}") from exc
        stored.sort()
        return stored

    def events_since(
        self, after_id: int, limit: int = 1000, *, include_late: bool = True
    ) -> list[dict[str, Any]]:
        """Events with id > ``after_id``, in id order (the live stream's sequence).

        Each has every stored column (``capabilities`` as the stored
        comma-separated string). ``include_late=False`` skips events that
        arrived behind the live horizon (``late``).
        """
        # On SQLite "+site" keeps the plan to the rowid range after ``after_id``: with the
        # (site, t_us, id) index it read and sorted every event of the site, each call
        # (a restart from a checkpoint paid for the whole history).
        site = literal_column("+site") if self.dialect == "sqlite" else events.c.site
        q = (select(events).where(site == self.site, events.c.id > after_id)
             .order_by(events.c.id).limit(limit))
        if not include_late:
            q = q.where(events.c.late == false())
        with self.reading() as conn:
            return [event_dict(r) for r in conn.execute(q)]

    def mark_late(self, keys: Sequence[str], applied: Mapping[str, int] | None = None) -> int:
        """Flag stored events late by key (distributed mode: the site's stream decided so);
        ``applied``: key -> the horizon a late state event was applied at live."""
        if not keys:
            return 0
        # The index is (site, t_us, key): the times the keys may hold narrow it to them.
        q = (update(events).where(events.c.site == self.site,
                                  events.c.t_us.in_(sorted(key_times(keys))),
                                  events.c.key.in_(list(keys)))
             .values(late=true()))
        with self._write() as conn:
            n = int(conn.execute(q).rowcount or 0)
            for key, at in (applied or {}).items():
                conn.execute(update(events).where(
                    events.c.site == self.site, events.c.t_us.in_(sorted(key_times([key]))),
                    events.c.key == key).values(applied_us=at))
            return n

    def events_between(
        self, t0_us: int, t1_us: int, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Events with ``t0_us <= t_us < t1_us``, ordered by (t_us, id)."""
        q = (
            select(events)
            .where(events.c.site == self.site, events.c.t_us >= t0_us, events.c.t_us < t1_us)
            .order_by(events.c.t_us, events.c.id)
        )
        if limit is not None:
            q = q.limit(limit)
        with self.reading() as conn:
            return [event_dict(r) for r in conn.execute(q)]

    def last_fix(self, officer: str) -> dict[str, Any] | None:
        """The officer's latest stored fix by event time (late ones included), or None."""
        q = (select(events).where(events.c.site == self.site, events.c.kind == "fix",
                                  events.c.officer == officer)
             .order_by(events.c.t_us.desc(), events.c.id.desc()).limit(1))
        with self.reading() as conn:
            row = conn.execute(q).first()
        return None if row is None else event_dict(row)

    def last_duty_event(self, officer: str, until_us: int) -> dict[str, Any] | None:
        """The officer's latest stored duty event at or before ``until_us``, or None."""
        q = (select(events).where(events.c.site == self.site, events.c.kind == "duty",
                                  events.c.officer == officer, events.c.t_us <= until_us)
             .order_by(events.c.t_us.desc(), events.c.id.desc()).limit(1))
        with self.reading() as conn:
            row = conn.execute(q).first()
        return None if row is None else event_dict(row)

    def last_duty_events(self, until: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        """:meth:`last_duty_event` of many officers (officer -> its ``until_us``) with one
        query per :data:`_IN_CHUNK` officers: a shift of thousands reporting in at once
        asks no question per officer. Reads those officers' duty events up to the latest
        ``until_us`` (a few per shift), newest first, and keeps each one's first in range."""
        out: dict[str, dict[str, Any]] = {}
        names = sorted(until)
        with self.reading() as conn:
            for i in range(0, len(names), _IN_CHUNK):
                chunk = names[i:i + _IN_CHUNK]
                q = (select(events).where(
                    events.c.site == self.site, events.c.kind == "duty",
                    events.c.officer.in_(chunk), events.c.t_us <= max(until[o] for o in chunk))
                     .order_by(events.c.officer, events.c.t_us.desc(), events.c.id.desc()))
                for row in conn.execute(q):
                    officer = row.officer
                    if officer not in out and row.t_us <= until[officer]:
                        out[officer] = event_dict(row)
        return out

    def max_event_id(self) -> int:
        """The newest event id, 0 if there are none."""
        # Walk the ids down from the newest and stop at the site's first: max() over the
        # site reads every id of the site from an index (seconds over months of history).
        # SQLite would still pick that index; "+site" keeps it to the rowid order.
        with self.reading() as conn:
            if self.dialect == "sqlite":
                q: Any = text("SELECT id FROM events WHERE +site = :site ORDER BY id DESC LIMIT 1"
                              ).bindparams(site=self.site)
            else:
                q = (select(events.c.id).where(events.c.site == self.site)
                     .order_by(events.c.id.desc()).limit(1))
            return int(conn.execute(q).scalar() or 0)

    def count_events(self) -> int:
        with self.reading() as conn:
            q = select(func.count()).select_from(events).where(events.c.site == self.site)
            return int(conn.execute(q).scalar_one())
