"""The live store: events, alert records, server state, and (via mixins) users,
devices, tokens and audit.

Open it with :func:`open_store`. With no URL it is a SQLite file
``<data_dir>/coverwatch.db`` that migrates itself to the newest schema on open;
a ``postgresql://`` URL uses psycopg 3 and expects ``coverwatch db upgrade``
(:func:`upgrade`) to have been run. Every method is one transaction, committed
before it returns, so an acknowledged event is durable.

Alerts are persisted, not managed: their lifecycle is the domain's
(:mod:`coverwatch.domain.alerts`); the store keeps each alert's latest
``Alert.to_record()`` and audits every change alongside it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, false, func, select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from coverwatch.domain.alerts import Alert, AlertLifecycleError, alert_id_for
from coverwatch.errors import StoreError
from coverwatch.storage.audit import AuditEntry, AuditMixin, _prepare_details
from coverwatch.storage.auditkeys import default_key_path, load_keyring
from coverwatch.storage.auth import AuthMixin
from coverwatch.storage.base import make_engine, normalise_url, now_us
from coverwatch.storage.briefing import BriefingMixin
from coverwatch.storage.contacts import ContactsMixin
from coverwatch.storage.deadletters import DeadLettersMixin
from coverwatch.storage.devicereports import DeviceReportsMixin, report_values
from coverwatch.storage.keeping import KeepingMixin
from coverwatch.storage.private import private_data_dir
from coverwatch.storage.tables import (
    DEFAULT_SITE,
    alerts,
    device_reports,
    engine_checkpoints,
    events,
    server_state,
)
from coverwatch.storage.tlog import append_event_leaves

__all__ = [
    "DB_FILENAME",
    "AppendResult",
    "InvalidAlertRecordError",
    "InvalidEventError",
    "Store",
    "alembic_config",
    "event_digest",
    "event_key",
    "head_revision",
    "open_store",
    "sqlite_url",
    "upgrade",
]

DB_FILENAME = "coverwatch.db"
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Which field, besides kind and time, identifies an event of each kind.
_KEY_FIELD = {"fix": "officer", "duty": "officer", "gate": "post", "flag": "flag"}


_EVENT_COLUMNS = (
    "site", "kind", "key", "t_us", "officer", "x", "y", "accuracy", "post", "flag", "on", "open",
    "capabilities", "source", "device", "received_us", "late", "raw", "accuracy_source",
    "applied_us",
)  # fmt: skip
_T_US = _EVENT_COLUMNS.index("t_us")
_COLUMN_LIST = ", ".join(f'"{c}"' for c in _EVENT_COLUMNS)
_SQLITE_ROW = "(" + ",".join("?" * len(_EVENT_COLUMNS)) + ")"
# 18 columns x 500 rows stays well under SQLite's 32766 bound parameters.
_SQLITE_CHUNK = 500
_SQLITE_SQL = {
    n: f"INSERT INTO events ({_COLUMN_LIST}) VALUES "
    + ",".join([_SQLITE_ROW] * n)
    + " ON CONFLICT (site, key) DO NOTHING RETURNING id, key"
    for n in (_SQLITE_CHUNK,)
}
_PG_TEMP_FLAG = "coverwatch_events_in"
_PG_TEMP_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS _cw_events_in (
    ord bigserial, site text, kind text, key text, t_us bigint, officer text, x double precision,
    y double precision, accuracy double precision, post text, flag text, "on" boolean,
    "open" boolean, capabilities text, source text, device text, received_us bigint,
    late boolean, raw text, accuracy_source text, applied_us bigint
) ON COMMIT DELETE ROWS
"""


class InvalidEventError(StoreError, ValueError):
    """An event row the store cannot key or store (unknown kind, missing field)."""


class InvalidAlertRecordError(StoreError, ValueError):
    """An alert record that ``Alert.from_record`` refuses, or whose id is not its key's."""


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


# Given the newly stored device reports, the alert records to raise in the same
# commit, each with its audit action.
AlertsFor = Callable[[list[dict[str, Any]]], list[tuple[dict[str, Any], str]]]


def _num(value: Any) -> str:
    try:
        return "" if value is None else repr(float(value))
    except (TypeError, ValueError):  # not storable either: the insert will say so
        return repr(value)


def event_digest(row: Mapping[str, Any]) -> str:
    """A short digest of what an event says (not when it arrived or how it was stored).

    A fix's accuracy counts only if the device reported it: a site default may
    change between two sendings of the same history.
    """
    kind = row.get("kind")
    if kind == "fix":
        reported = row.get("accuracy_source") in (None, "reported", "hdop")
        parts = [_num(row.get("x")), _num(row.get("y")),
                 _num(row.get("accuracy")) if reported else ""]
    elif kind == "duty":
        caps = row.get("capabilities")
        if caps is not None and not isinstance(caps, str):
            caps = ",".join(sorted(caps))
        parts = [str(bool(row.get("on"))), caps or ""]
    elif kind == "gate":
        parts = [str(bool(row.get("open")))]
    else:
        parts = [str(bool(row.get("on")))]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def event_key(kind: str, ident: str, t_us: int, device: str | None = None,
              digest: str = "") -> str:
    """The idempotence key ``"<kind>|<officer/post/flag>|<t_us>|<device>|<digest>"``.

    The same sender re-sending the same event gives the same key (stored once);
    a different event of the same officer at the same time, or the same one
    from another device, is a different event.
    """
    return f"{kind}|{ident}|{t_us}|{device or ''}|{digest}"


def row_key(row: Mapping[str, Any]) -> str:
    """The idempotence key the store gives an event row (the bus's message id)."""
    return str(_event_row(row, 0, "")[2])


def sqlite_url(data_dir: Path) -> str:
    """The URL of the embedded database file in ``data_dir``."""
    return f"sqlite:///{(Path(data_dir) / DB_FILENAME).resolve()}"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest schema revision this version of coverwatch knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError("no migrations found in the coverwatch package")
    return head


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _upgrade_engine(engine: Engine) -> None:
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")
        if conn.in_transaction():
            conn.commit()


def upgrade(url: str | None, data_dir: Path | None = None) -> str:
    """Migrate the database to the newest schema (``coverwatch db upgrade``); returns it."""
    if url is None:
        if data_dir is None:
            raise StoreError("upgrade needs a database URL or a data directory")
        private_data_dir(data_dir, DB_FILENAME)
        url = sqlite_url(data_dir)
    engine = make_engine(url)
    try:
        _upgrade_engine(engine)
        return head_revision()
    finally:
        engine.dispose()


def open_store(
    url: str | None, data_dir: Path, *, migrate: bool | None = None, site: str | None = None,
    audit_key: Path | bool | None = None,
) -> Store:
    """Open the store, bound to ``site`` (a store key) for every per-site table.

    ``site`` None: the site whose id ``COVERWATCH_SITE`` names (the CLI's
    ``coverwatch --site ID …``), else ``default`` (a single-site deployment).

    ``audit_key``: the audit MAC key file (None: ``COVERWATCH_AUDIT_KEY_FILE`` or
    ``<data_dir>/keys/audit.key``, created if missing; False: none, entries unsealed).

    ``url`` None means the SQLite file ``data_dir/coverwatch.db``. ``migrate``
    None means: SQLite upgrades itself on open; PostgreSQL must already be at
    the newest revision (run :func:`upgrade`), otherwise :class:`StoreError`.
    """
    if url is None:
        private_data_dir(data_dir, DB_FILENAME)
        url = sqlite_url(data_dir)
    parsed = normalise_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and sqlite3.sqlite_version_info < (3, 35):
        raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: coverwatch needs 3.35+")
    engine = make_engine(parsed)
    try:
        if migrate if migrate is not None else is_sqlite:
            _upgrade_engine(engine)
        current, head = _current_revision(engine), head_revision()
        if current != head:
            raise StoreError(
                f"database schema is at {current or 'nothing'}, this coverwatch needs {head}: "
                "run `coverwatch db upgrade`"
            )
    except BaseException:
        engine.dispose()
        raise
    store = Store(engine, site or DEFAULT_SITE)
    if site is None and os.environ.get("COVERWATCH_SITE"):
        from coverwatch.storage.sites import key_for_site

        store.site = key_for_site(store, os.environ["COVERWATCH_SITE"])
    if audit_key is not False:
        store.audit_keyring = load_keyring(
            default_key_path(data_dir) if audit_key in (None, True) else Path(str(audit_key))
        )
    return store


def _insert(engine_dialect: str) -> Any:
    return postgresql.insert if engine_dialect == "postgresql" else sqlite.insert


def _event_row(row: Mapping[str, Any], received: int, site: str) -> tuple[Any, ...]:
    """One row as a tuple in ``_EVENT_COLUMNS`` order, with its idempotence key."""
    kind = row.get("kind")
    field = _KEY_FIELD.get(kind) if isinstance(kind, str) else None
    if field is None:
        raise InvalidEventError(f"unknown event kind {kind!r} (expected fix, duty, gate or flag)")
    ident = row.get(field)
    t_us = row.get("t_us")
    if not isinstance(ident, str) or not ident:
        raise InvalidEventError(f"{kind} event needs a {field}")
    if not isinstance(t_us, int) or isinstance(t_us, bool):
        raise InvalidEventError(f"{kind} event needs an integer t_us")
    source = row.get("source")
    if not isinstance(source, str) or not source:
        raise InvalidEventError("event needs a source (http, osmand, mqtt, ...)")
    caps = row.get("capabilities")
    if caps is not None and not isinstance(caps, str):
        caps = ",".join(sorted(caps))
    raw = row.get("raw")
    get = row.get
    device = get("device")
    return (
        site,
        kind,
        event_key(str(kind), ident, t_us, device if isinstance(device, str) else None,
                  event_digest(row)),
        t_us,
        get("officer"),
        get("x"),
        get("y"),
        get("accuracy"),
        get("post"),
        get("flag"),
        get("on"),
        get("open"),
        caps,
        source,
        device,
        get("received_us", received),
        bool(get("late", False)),
        None if raw is None else orjson.dumps(raw).decode(),
        get("accuracy_source"),
        get("applied_us"),
    )


def _sqlite_sql(n: int) -> str:
    sql = _SQLITE_SQL.get(n)
    if sql is None:
        sql = (
            f"INSERT INTO events ({_COLUMN_LIST}) VALUES "
            + ",".join([_SQLITE_ROW] * n)
            + " ON CONFLICT (site, key) DO NOTHING RETURNING id, key"
        )
    return sql


def _sqlite_append(conn: Connection, params: list[tuple[Any, ...]]) -> list[tuple[int, str]]:
    # Hand-built multi-row VALUES on the driver cursor: SQLAlchemy's per-row
    # parameter processing costs more than SQLite's insert itself on this hot path.
    # Rows conflicting with earlier rows of the same statement are skipped, so
    # the first occurrence of a key wins.
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        stored: list[tuple[int, str]] = []
        for i in range(0, len(params), _SQLITE_CHUNK):
            chunk = params[i : i + _SQLITE_CHUNK]
            flat = [v for row in chunk for v in row]
            stored.extend(cursor.execute(_sqlite_sql(len(chunk)), flat).fetchall())
        return stored
    finally:
        cursor.close()


def _postgresql_append(conn: Connection, params: list[tuple[Any, ...]]) -> list[tuple[int, str]]:
    # COPY into a per-connection temp table, then one INSERT … SELECT … ON CONFLICT:
    # far faster than a huge parameterised VALUES list through psycopg.
    record = conn.connection
    raw = record.driver_connection
    created_here = False
    if not record.info.get(_PG_TEMP_FLAG):
        conn.exec_driver_sql(_PG_TEMP_TABLE)
        record.info[_PG_TEMP_FLAG] = created_here = True
    try:
        with raw.cursor() as cur:  # type: ignore[union-attr]
            with cur.copy(f"COPY _cw_events_in ({_COLUMN_LIST}) FROM STDIN") as copy:
                for row in params:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO events ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM _cw_events_in "
                "ORDER BY ord ON CONFLICT (site, key) DO NOTHING RETURNING id, key"
            )
            # The temp table empties itself at commit (ON COMMIT DELETE ROWS).
            return [(int(r[0]), r[1]) for r in cur.fetchall()]
    except BaseException:
        if created_here:
            # The rollback will undo the CREATE too.
            record.info.pop(_PG_TEMP_FLAG, None)
        raise


def _event_out(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    raw = out.get("raw")
    if raw is not None:
        out["raw"] = orjson.loads(raw)
    return out


def _alert_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """The alerts row for a domain alert record (checked by ``Alert.from_record``)."""
    try:
        alert = Alert.from_record(record)
    except AlertLifecycleError as exc:
        raise InvalidAlertRecordError(str(exc)) from None
    expected = alert_id_for(alert.kind, alert.post, alert.rule, alert.lapse_start)
    if alert.id != expected:
        raise InvalidAlertRecordError(
            f"alert record id {alert.id!r} is not the id of its key ({expected!r})"
        )
    return {
        "id": alert.id,
        "kind": alert.kind,
        "post": alert.post,
        "rule": alert.rule,
        "lapse_start_us": alert.lapse_start,
        "alert_at_us": alert.alert_at,
        "state": alert.state.value,
    }


class Store(AuthMixin, BriefingMixin, ContactsMixin, KeepingMixin, DeviceReportsMixin,
            DeadLettersMixin, AuditMixin):
    """The persistent store. Safe to share between the threads of one process."""

    # -- events -------------------------------------------------------------

    def append_events(
        self, rows: Sequence[Mapping[str, Any]], *,
        reports: Sequence[Mapping[str, Any]] = (), alerts_for: AlertsFor | None = None,
    ) -> AppendResult:
        """Store events in one transaction; re-sent events (same key) are skipped.

        Each row has ``kind`` (fix, duty, gate, flag), ``t_us``, ``source`` and
        the kind's fields (fix: officer, x, y, accuracy; duty: officer, on,
        capabilities; gate: post, open; flag: flag, on), optionally ``device``,
        ``received_us`` (default: now), ``late`` and ``raw`` (any JSON value).
        Returns the stored rows (copies of the given dicts with ``"id"`` set)
        and their ids, in id order; see :class:`AppendResult`.

        ``reports`` are device reports (see ``device_reports``) stored in the
        same transaction; a re-sent one (same key) is skipped. ``alerts_for``
        gets the newly stored reports and returns alert records to save and
        audit in that same transaction (an SOS is durable with its report
        before the device is answered); an alert already stored is kept as is.
        """
        if not rows and not reports:
            return AppendResult(0, 0, [], [])
        received = now_us()
        params = [_event_row(r, received, self.site) for r in rows]
        try:
            values_of_reports = [report_values(r, received, self.site) for r in reports]
        except ValueError as e:
            raise InvalidEventError(str(e)) from None
        append = _postgresql_append if self.dialect == "postgresql" else _sqlite_append
        writer = self._audit_write if alerts_for is not None else self._write
        new_reports: list[dict[str, Any]] = []
        raised: list[dict[str, Any]] = []
        try:
            with writer() as conn:
                stored = append(conn, params) if params else []
                if stored:
                    # Report checkpoints after the earliest new event no longer hold.
                    earliest = min(p[_T_US] for p in params)
                    if self.after_append is not None:  # the bus outbox
                        self.after_append(conn, stored, earliest)
                    conn.execute(engine_checkpoints.delete().where(
                        engine_checkpoints.c.site == self.site,
                        engine_checkpoints.c.at_us > earliest))
                for given, values in zip(reports, values_of_reports, strict=True):
                    insert = _insert(self.dialect)(device_reports).values(**values)
                    got = conn.execute(insert.on_conflict_do_nothing(
                        index_elements=[device_reports.c.site, device_reports.c.key]
                    ).returning(device_reports.c.id)
                    ).scalar()
                    if got is not None:
                        new_reports.append({**given, **values, "id": int(got),
                                            "raw": given.get("raw")})
                append_event_leaves(conn, self.site, stored, new_reports)  # transparency log
                if alerts_for is not None and new_reports:
                    for record, action in alerts_for(new_reports):
                        if self._insert_alert_locked(conn, record, action):
                            raised.append(record)
        except (SQLAlchemyError, psycopg.Error, sqlite3.Error) as exc:
            raise StoreError(f"could not store {len(params)} events: {exc}") from exc
        stored.sort()
        # Each stored key is its first occurrence in the batch (reversed: first wins).
        first = {p[2]: i for i, p in reversed(list(enumerate(params)))}
        out: list[dict[str, Any]] = []
        for event_id, key in stored:
            row = dict(rows[first[key]])
            row["id"] = event_id
            out.append(row)
        ids = [event_id for event_id, _ in stored]
        return AppendResult(len(ids), len(params) - len(ids), ids, out, new_reports, raised)

    def _insert_alert_locked(self, conn: Connection, record: Mapping[str, Any],
                             action: str) -> bool:
        """Insert a new alert and audit it (inside :meth:`_audit_write`); False if it exists."""
        values = _alert_values(record)
        details_text, body = _prepare_details(record)
        values |= {"site": self.site, "record": details_text, "updated_us": now_us()}
        insert = _insert(self.dialect)(alerts).values(**values)
        got = conn.execute(insert.on_conflict_do_nothing().returning(alerts.c.id)).scalar()
        if got is None:
            return False
        self._append_audit_locked(conn, "device", action, f"alert:{values['id']}",
                                  (details_text, body))
        return True

    def events_since(
        self, after_id: int, limit: int = 1000, *, include_late: bool = True
    ) -> list[dict[str, Any]]:
        """Events with id > ``after_id``, in id order (the live stream's sequence).

        Each has every stored column (``capabilities`` as the stored
        comma-separated string). ``include_late=False`` skips events that
        arrived behind the live horizon (``late``).
        """
        q = (select(events).where(events.c.site == self.site, events.c.id > after_id)
             .order_by(events.c.id).limit(limit))
        if not include_late:
            q = q.where(events.c.late == false())
        with self._read() as conn:
            return [_event_out(r) for r in conn.execute(q)]

    def mark_late(self, keys: Sequence[str], applied: Mapping[str, int] | None = None) -> int:
        """Flag stored events late by key (distributed mode: the site's stream decided so);
        ``applied``: key -> the horizon a late state event was applied at live."""
        if not keys:
            return 0
        q = (update(events).where(events.c.site == self.site, events.c.key.in_(list(keys)))
             .values(late=true()))
        with self._write() as conn:
            n = int(conn.execute(q).rowcount or 0)
            for key, at in (applied or {}).items():
                conn.execute(update(events).where(events.c.site == self.site,
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
        with self._read() as conn:
            return [_event_out(r) for r in conn.execute(q)]

    def last_fix(self, officer: str) -> dict[str, Any] | None:
        """The officer's latest stored fix by event time (late ones included), or None."""
        q = (select(events).where(events.c.site == self.site, events.c.kind == "fix",
                                  events.c.officer == officer)
             .order_by(events.c.t_us.desc(), events.c.id.desc()).limit(1))
        with self._read() as conn:
            row = conn.execute(q).first()
        return None if row is None else _event_out(row)

    def last_duty_event(self, officer: str, until_us: int) -> dict[str, Any] | None:
        """The officer's latest stored duty event at or before ``until_us``, or None."""
        q = (select(events).where(events.c.site == self.site, events.c.kind == "duty",
                                  events.c.officer == officer, events.c.t_us <= until_us)
             .order_by(events.c.t_us.desc(), events.c.id.desc()).limit(1))
        with self._read() as conn:
            row = conn.execute(q).first()
        return None if row is None else _event_out(row)

    def max_event_id(self) -> int:
        """The newest event id, 0 if there are none."""
        # Walk the ids down from the newest and stop at the site's first: max() over the
        # site reads every id of the site from an index (seconds over months of history).
        # SQLite would still pick that index; "+site" keeps it to the rowid order.
        with self._read() as conn:
            if self.dialect == "sqlite":
                q: Any = text("SELECT id FROM events WHERE +site = :site ORDER BY id DESC LIMIT 1"
                              ).bindparams(site=self.site)
            else:
                q = (select(events.c.id).where(events.c.site == self.site)
                     .order_by(events.c.id.desc()).limit(1))
            return int(conn.execute(q).scalar() or 0)

    def count_events(self) -> int:
        with self._read() as conn:
            q = select(func.count()).select_from(events).where(events.c.site == self.site)
            return int(conn.execute(q).scalar_one())

    # -- alerts -------------------------------------------------------------

    def record_alert_event(
        self, record: Mapping[str, Any], *, actor: str, action: str
    ) -> AuditEntry:
        """Save an alert's latest record and audit the change, in one transaction.

        ``record`` is ``coverwatch.domain.alerts.Alert.to_record()``; the row is
        inserted or replaced by its id, so saving the same record twice leaves
        one alert. The audit entry (``actor``, ``action``, subject
        ``alert:<id>``, details = the record) is chained like any other.
        """
        values = _alert_values(record)
        details_text, body = _prepare_details(record)
        values |= {"site": self.site, "record": details_text, "updated_us": now_us()}
        insert = _insert(self.dialect)(alerts).values(**values)
        upsert = insert.on_conflict_do_update(
            index_elements=[alerts.c.site, alerts.c.id],
            set_={k: insert.excluded[k] for k in values if k not in ("site", "id")},
        )
        with self._audit_write() as conn:
            conn.execute(upsert)
            return self._append_audit_locked(
                conn, actor, action, f"alert:{values['id']}", (details_text, body)
            )

    def load_alerts(self) -> list[dict[str, Any]]:
        """Every stored alert record, ordered by alert time then id (for ``AlertBook``)."""
        q = (select(alerts.c.record).where(alerts.c.site == self.site)
             .order_by(alerts.c.alert_at_us, alerts.c.id))
        with self._read() as conn:
            return [orjson.loads(r) for r in conn.execute(q).scalars()]

    def get_alert_record(self, alert_id: str) -> dict[str, Any] | None:
        """One alert's latest record, or None."""
        q = select(alerts.c.record).where(alerts.c.site == self.site, alerts.c.id == alert_id)
        with self._read() as conn:
            text = conn.execute(q).scalar()
        return None if text is None else dict(orjson.loads(text))

    # -- server state -------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        """A value saved with :meth:`set_state`, or None."""
        q = select(server_state.c.value).where(
            server_state.c.site == self.site, server_state.c.key == key)
        with self._read() as conn:
            value = conn.execute(q).scalar()
        return None if value is None else str(value)

    def set_state(self, key: str, value: str) -> None:
        """Save ``value`` under ``key`` (replacing any), durably, in one transaction."""
        insert = _insert(self.dialect)(server_state).values(
            site=self.site, key=key, value=value, updated_us=now_us()
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[server_state.c.site, server_state.c.key],
            set_={"value": insert.excluded.value, "updated_us": insert.excluded.updated_us},
        )
        with self._write() as conn:
            conn.execute(upsert)

    # -- schema -------------------------------------------------------------

    def schema_revision(self) -> str | None:
        return _current_revision(self.engine)
