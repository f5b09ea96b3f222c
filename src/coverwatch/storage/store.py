"""The live store: events, alerts, and (via mixins) users, devices, tokens and audit.

Open it with :func:`open_store`. With no URL it is a SQLite file
``<data_dir>/coverwatch.db`` that migrates itself to the newest schema on open;
a ``postgresql://`` URL uses psycopg 3 and expects ``coverwatch db upgrade``
(:func:`upgrade`) to have been run. Every method is one transaction, committed
before it returns, so an acknowledged event is durable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from coverwatch.errors import StoreError
from coverwatch.storage.audit import AuditMixin
from coverwatch.storage.auth import AuthMixin
from coverwatch.storage.base import make_engine, normalise_url, now_us
from coverwatch.storage.tables import ALERT_KINDS, ALERT_STATES, alerts, events

__all__ = [
    "DB_FILENAME",
    "TRANSITIONS",
    "Alert",
    "AlertNotFoundError",
    "AlertUpsert",
    "AppendResult",
    "IllegalTransitionError",
    "InvalidEventError",
    "Store",
    "alembic_config",
    "event_key",
    "head_revision",
    "open_store",
    "sqlite_url",
    "upgrade",
]

DB_FILENAME = "coverwatch.db"
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Lifecycle of an alert: to_state -> states it may be reached from.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "acknowledged": frozenset({"open"}),
    "resolved": frozenset({"open", "acknowledged"}),
    "closed": frozenset({"resolved"}),
}

# Which field, besides kind and time, identifies an event of each kind.
_KEY_FIELD = {"fix": "officer", "duty": "officer", "gate": "post", "flag": "flag"}


_EVENT_COLUMNS = (
    "kind", "key", "t_us", "officer", "x", "y", "accuracy", "post", "flag", "on", "open",
    "capabilities", "source", "device", "received_us", "late", "raw",
)  # fmt: skip
_COLUMN_LIST = ", ".join(f'"{c}"' for c in _EVENT_COLUMNS)
_SQLITE_ROW = "(" + ",".join("?" * len(_EVENT_COLUMNS)) + ")"
# 17 columns x 1000 rows stays under SQLite's 32766 bound parameters.
_SQLITE_CHUNK = 1000
_PG_TEMP_FLAG = "coverwatch_events_in"
_PG_TEMP_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS _cw_events_in (
    ord bigserial, kind text, key text, t_us bigint, officer text, x double precision,
    y double precision, accuracy double precision, post text, flag text, "on" boolean,
    "open" boolean, capabilities text, source text, device text, received_us bigint,
    late boolean, raw text
) ON COMMIT DELETE ROWS
"""


class InvalidEventError(StoreError, ValueError):
    """An event row the store cannot key or store (unknown kind, missing field)."""


class AlertNotFoundError(StoreError, LookupError):
    """No alert has the given id."""


class IllegalTransitionError(StoreError, ValueError):
    """The alert's lifecycle does not allow the requested change of state."""

    def __init__(self, alert_id: int, from_state: str, to_state: str) -> None:
        self.alert_id = alert_id
        self.from_state = from_state
        self.to_state = to_state
        allowed = sorted(TRANSITIONS.get(to_state, ()))
        super().__init__(
            f"alert {alert_id} cannot go from {from_state} to {to_state}"
            + (f" (only from {', '.join(allowed)})" if allowed else "")
        )


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one :meth:`Store.append_events` call stored."""

    inserted: int
    duplicates: int
    ids: list[int]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert row. Times are microseconds since the epoch."""

    id: int
    post: str
    rule: str
    kind: str
    lapse_start_us: int
    alert_at_us: int
    state: str
    level: int
    acknowledged_by: str | None
    acknowledged_at_us: int | None
    note: str | None
    resolved_at_us: int | None
    closed_by: str | None
    closed_at_us: int | None


class AlertUpsert(NamedTuple):
    """The alert after an upsert, and whether this call created it."""

    alert: Alert
    created: bool


def event_key(kind: str, ident: str, t_us: int) -> str:
    """The idempotence key ``"<kind>|<officer/post/flag>|<t_us>"``."""
    return f"{kind}|{ident}|{t_us}"


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
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        url = sqlite_url(data_dir)
    engine = make_engine(url)
    try:
        _upgrade_engine(engine)
        return head_revision()
    finally:
        engine.dispose()


def open_store(url: str | None, data_dir: Path, *, migrate: bool | None = None) -> Store:
    """Open the store.

    ``url`` None means the SQLite file ``data_dir/coverwatch.db``. ``migrate``
    None means: SQLite upgrades itself on open; PostgreSQL must already be at
    the newest revision (run :func:`upgrade`), otherwise :class:`StoreError`.
    """
    if url is None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
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
    return Store(engine)


def _insert(engine_dialect: str) -> Any:
    return postgresql.insert if engine_dialect == "postgresql" else sqlite.insert


def _event_row(row: Mapping[str, Any], received: int) -> tuple[Any, ...]:
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
    return (
        kind,
        f"{kind}|{ident}|{t_us}",
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
        get("device"),
        get("received_us", received),
        bool(get("late", False)),
        None if raw is None else orjson.dumps(raw).decode(),
    )


def _sqlite_append(conn: Connection, params: list[tuple[Any, ...]]) -> list[int]:
    # Hand-built multi-row VALUES: SQLAlchemy's per-row parameter processing
    # costs more than SQLite's insert itself on this hot path.
    ids: list[int] = []
    for i in range(0, len(params), _SQLITE_CHUNK):
        chunk = params[i : i + _SQLITE_CHUNK]
        sql = (
            f"INSERT INTO events ({_COLUMN_LIST}) VALUES "
            + ",".join([_SQLITE_ROW] * len(chunk))
            + " ON CONFLICT (key) DO NOTHING RETURNING id"
        )
        flat = tuple(v for row in chunk for v in row)
        ids.extend(r[0] for r in conn.exec_driver_sql(sql, flat))
    return ids


def _postgresql_append(conn: Connection, params: list[tuple[Any, ...]]) -> list[int]:
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
                "ORDER BY ord ON CONFLICT (key) DO NOTHING RETURNING id"
            )
            # The temp table empties itself at commit (ON COMMIT DELETE ROWS).
            return [int(r[0]) for r in cur.fetchall()]
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


def _alert(row: Any) -> Alert:
    return Alert(**row._mapping)


class Store(AuthMixin, AuditMixin):
    """The persistent store. Safe to share between the threads of one process."""

    # -- events -------------------------------------------------------------

    def append_events(self, rows: Sequence[Mapping[str, Any]]) -> AppendResult:
        """Store events in one transaction; re-sent events (same key) are skipped.

        Each row has ``kind`` (fix, duty, gate, flag), ``t_us``, ``source`` and
        the kind's fields (fix: officer, x, y, accuracy; duty: officer, on,
        capabilities; gate: post, open; flag: flag, on), optionally ``device``,
        ``received_us`` (default: now), ``late`` and ``raw`` (any JSON value).
        Returns the ids of the new rows, in insertion order.
        """
        if not rows:
            return AppendResult(0, 0, [])
        received = now_us()
        params = [_event_row(r, received) for r in rows]
        append = _postgresql_append if self.dialect == "postgresql" else _sqlite_append
        try:
            with self._write() as conn:
                ids = sorted(append(conn, params))
        except (SQLAlchemyError, psycopg.Error, sqlite3.Error) as exc:
            raise StoreError(f"could not store {len(params)} events: {exc}") from exc
        return AppendResult(len(ids), len(params) - len(ids), ids)

    def events_since(self, after_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Events with id > ``after_id``, in id order (the live stream's sequence)."""
        q = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        with self._read() as conn:
            return [_event_out(r) for r in conn.execute(q)]

    def events_between(
        self, t0_us: int, t1_us: int, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Events with ``t0_us <= t_us < t1_us``, ordered by (t_us, id)."""
        q = (
            select(events)
            .where(events.c.t_us >= t0_us, events.c.t_us < t1_us)
            .order_by(events.c.t_us, events.c.id)
        )
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            return [_event_out(r) for r in conn.execute(q)]

    def max_event_id(self) -> int:
        """The newest event id, 0 if there are none."""
        with self._read() as conn:
            return int(conn.execute(select(func.max(events.c.id))).scalar() or 0)

    def count_events(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    # -- alerts -------------------------------------------------------------

    def upsert_alert(
        self,
        post: str,
        rule: str,
        kind: str,
        lapse_start_us: int,
        alert_at_us: int,
        level: int = 1,
    ) -> AlertUpsert:
        """Create the alert for a lapse, or return the one that exists.

        Idempotent on (post, rule, lapse_start_us, kind), so a restarted server
        re-deriving the same lapse does not raise a second alert. A higher
        ``level`` on a still-unresolved alert escalates it.
        """
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {kind!r} (expected {', '.join(ALERT_KINDS)})")
        key = (
            (alerts.c.post == post)
            & (alerts.c.rule == rule)
            & (alerts.c.lapse_start_us == lapse_start_us)
            & (alerts.c.kind == kind)
        )
        stmt = (
            _insert(self.dialect)(alerts)
            .values(
                post=post,
                rule=rule,
                kind=kind,
                lapse_start_us=lapse_start_us,
                alert_at_us=alert_at_us,
                state="open",
                level=level,
            )
            .on_conflict_do_nothing(index_elements=["post", "rule", "lapse_start_us", "kind"])
            .returning(alerts.c.id)
        )
        with self._write() as conn:
            created = conn.execute(stmt).first() is not None
            if not created:
                conn.execute(
                    update(alerts)
                    .where(key, alerts.c.level < level)
                    .where(alerts.c.state.in_(("open", "acknowledged")))
                    .values(level=level)
                )
            row = conn.execute(select(alerts).where(key)).one()
        return AlertUpsert(_alert(row), created)

    def transition(
        self,
        alert_id: int,
        to_state: str,
        actor: str,
        note: str | None = None,
        *,
        t_us: int,
    ) -> Alert:
        """Move an alert along open → acknowledged → resolved → closed.

        Also open → resolved (cover returned before acknowledgement). Anything
        else raises :class:`IllegalTransitionError`; an unknown id raises
        :class:`AlertNotFoundError`. ``note``, if given, replaces the alert's note.
        """
        if to_state not in ALERT_STATES:
            raise ValueError(f"unknown alert state {to_state!r}")
        allowed = TRANSITIONS.get(to_state, frozenset())
        values: dict[str, Any] = {"state": to_state}
        if to_state == "acknowledged":
            values |= {"acknowledged_by": actor, "acknowledged_at_us": t_us}
        elif to_state == "resolved":
            values["resolved_at_us"] = t_us
        elif to_state == "closed":
            values |= {"closed_by": actor, "closed_at_us": t_us}
        if note is not None:
            values["note"] = note
        with self._write() as conn:
            # The state check is in the UPDATE itself, so two racing callers cannot both win.
            done = conn.execute(
                update(alerts)
                .where(alerts.c.id == alert_id, alerts.c.state.in_(sorted(allowed)))
                .values(**values)
            ).rowcount
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise AlertNotFoundError(f"no alert with id {alert_id}")
        if not done:
            raise IllegalTransitionError(alert_id, row.state, to_state)
        return _alert(row)

    def get_alert(self, alert_id: int) -> Alert | None:
        with self._read() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        return None if row is None else _alert(row)

    def list_alerts(
        self,
        state: str | Iterable[str] | None = None,
        since_us: int | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        """Alerts, oldest first; optionally only in ``state`` and raised at/after ``since_us``."""
        q = select(alerts).order_by(alerts.c.alert_at_us, alerts.c.id)
        if state is not None:
            states = [state] if isinstance(state, str) else list(state)
            q = q.where(alerts.c.state.in_(states))
        if since_us is not None:
            q = q.where(alerts.c.alert_at_us >= since_us)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            return [_alert(r) for r in conn.execute(q)]

    # -- schema -------------------------------------------------------------

    def schema_revision(self) -> str | None:
        return _current_revision(self.engine)
