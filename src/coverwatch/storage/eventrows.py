"""How an event becomes a stored row: its idempotence key and digest, its column
values, and the bulk insert each database is fastest with.

:class:`~coverwatch.storage.events.EventRepository` stores and reads events
through these; the bus keys its messages with :func:`row_key`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from coverwatch.domain.fixbatch import FixBatch
from coverwatch.errors import StoreError

__all__ = [
    "RECEIVED_US",
    "T_US",
    "InvalidEventError",
    "event_dict",
    "event_digest",
    "event_key",
    "event_row",
    "event_rows",
    "fix_params",
    "key_fixes",
    "key_times",
    "postgresql_append",
    "row_key",
    "sqlite_append",
    "sqlite_append_fixes",
]

# Which field, besides kind and time, identifies an event of each kind.
_KEY_FIELD = {"fix": "officer", "duty": "officer", "gate": "post", "flag": "flag"}


_EVENT_COLUMNS = (
    "site", "kind", "key", "t_us", "officer", "x", "y", "accuracy", "post", "flag", "on", "open",
    "capabilities", "source", "device", "received_us", "late", "raw", "accuracy_source",
    "applied_us",
)  # fmt: skip
T_US = _EVENT_COLUMNS.index("t_us")
RECEIVED_US = _EVENT_COLUMNS.index("received_us")
_COLUMN_LIST = ", ".join(f'"{c}"' for c in _EVENT_COLUMNS)
_SQLITE_ROW = "(" + ",".join("?" * len(_EVENT_COLUMNS)) + ")"
# 18 columns x 500 rows stays well under SQLite's 32766 bound parameters.
_SQLITE_CHUNK = 500
_SQLITE_SQL: dict[int, str] = {}

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


def key_times(keys: Sequence[str]) -> set[int]:
    """Every time the keys may hold: each integer among a key's fields after its kind (a
    name may itself hold ``|`` and digits, a digest may be all digits: a superset). The
    stored row's ``t_us`` is among them, so a lookup by key may also ask by time."""
    out: set[int] = set()
    for key in keys:
        for part in key.split("|")[1:]:
            digits = part.removeprefix("-")
            if digits.isascii() and digits.isdecimal():
                out.add(int(part))
    return out


def row_key(row: Mapping[str, Any]) -> str:
    """The idempotence key the store gives an event row (the bus's message id)."""
    return str(event_row(row, 0, "")[2])


def event_row(row: Mapping[str, Any], received: int, site: str) -> tuple[Any, ...]:
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


def event_rows(rows: Sequence[Mapping[str, Any]], received: int, site: str
               ) -> list[tuple[Any, ...]]:
    """:func:`event_row` of every row, in one pass: a plain fix (the bulk of any batch)
    is keyed inline, with the digest's parts as :func:`event_digest` writes them, without
    a call per row or per field (issue 25); anything else goes through :func:`event_row`."""
    out: list[tuple[Any, ...]] = []
    append = out.append
    sha256 = hashlib.sha256
    dumps = orjson.dumps
    reported_sources = (None, "reported", "hdop")
    for row in rows:
        get = row.get
        officer = get("officer")
        t_us = get("t_us")
        source = get("source")
        x, y, acc = get("x"), get("y"), get("accuracy")
        if (get("kind") != "fix" or type(officer) is not str or not officer
                or type(t_us) is not int or type(source) is not str or not source
                or type(x) is not float or type(y) is not float
                or get("capabilities") is not None):
            append(event_row(row, received, site))
            continue
        acc_source = get("accuracy_source")
        if acc_source not in reported_sources:
            a = ""
        elif type(acc) is float:
            a = repr(acc)
        else:
            a = _num(acc)
        digest = sha256(f"{x!r}\x1f{y!r}\x1f{a}".encode()).hexdigest()[:16]
        device = get("device")
        raw = get("raw")
        append((
            site, "fix",
            f"fix|{officer}|{t_us}|{device if type(device) is str else ''}|{digest}",
            t_us, officer, x, y, acc, get("post"), get("flag"), get("on"), get("open"), None,
            source, device, get("received_us", received), bool(get("late", False)),
            None if raw is None else dumps(raw).decode(), acc_source, get("applied_us"),
        ))
    return out


def key_fixes(batch: FixBatch) -> None:
    """Fill a batch's idempotence keys and kept text as :func:`event_rows` writes them for
    the same rows (no device: a device's upload never comes as a batch); run before the
    commit, off the event loop, so the store thread only inserts."""
    sha256 = hashlib.sha256
    batch.keys = [
        f"fix|{o}|{t}||"
        + sha256(f"{x!r}\x1f{y!r}\x1f{repr(a) if rep else ''}".encode()).hexdigest()[:16]
        for o, t, x, y, a, rep in zip(batch.officer, batch.t_us, batch.x, batch.y,
                                      batch.accuracy, batch.reported, strict=True)]
    dumps = orjson.dumps
    batch.raw_json = [dumps(r).decode() for r in batch.raw]


_WIDTH = len(_EVENT_COLUMNS)


def fix_params(batch: FixBatch, received: int, site: str) -> list[Any]:
    """A keyed batch's column values, row after row in ``_EVENT_COLUMNS`` order, as one
    flat list (each column set by one slice assignment: no tuple per row)."""
    n = len(batch)
    flat: list[Any] = [None] * (n * _WIDTH)
    for name, values in (
            ("site", [site] * n), ("kind", ["fix"] * n), ("key", batch.keys),
            ("t_us", batch.t_us), ("officer", batch.officer), ("x", batch.x), ("y", batch.y),
            ("accuracy", batch.accuracy), ("source", [batch.source] * n),
            ("received_us", [received] * n), ("late", [False] * n), ("raw", batch.raw_json),
            ("accuracy_source", ["reported" if r else "none" for r in batch.reported])):
        flat[_EVENT_COLUMNS.index(name)::_WIDTH] = values
    return flat


# A plain fix's row with the values every fix of a batch shares bound once (?1 site,
# ?2 source, ?3 arrival) and the rest written in: binding is the GIL's part of the insert.
_FIX_VARYING = ("key", "t_us", "officer", "x", "y", "accuracy", "raw", "accuracy_source")
_FIX_SHARED = {"site": "?1", "kind": "'fix'", "source": "?2", "received_us": "?3", "late": "0"}
_SQLITE_FIX_SQL: dict[int, str] = {}


def _sqlite_fix_sql(n: int) -> str:
    sql = _SQLITE_FIX_SQL.get(n)
    if sql is None:
        rows = []
        for r in range(n):
            at = {c: f"?{4 + r * len(_FIX_VARYING) + k}" for k, c in enumerate(_FIX_VARYING)}
            rows.append("(" + ",".join(_FIX_SHARED.get(c) or at.get(c) or "NULL"
                                       for c in _EVENT_COLUMNS) + ")")
        sql = _SQLITE_FIX_SQL[n] = (f"INSERT INTO events ({_COLUMN_LIST}) VALUES "
                                    + ",".join(rows) + " ON CONFLICT (site, t_us, key) DO NOTHING")
    return sql


def sqlite_append_fixes(conn: Connection, batch: FixBatch, received: int, site: str
                        ) -> list[tuple[int, str]]:
    """:func:`sqlite_append` of a keyed batch of plain on-time fixes: the same rows, with
    8 values bound per row instead of 20."""
    n, width = len(batch), len(_FIX_VARYING)
    flat: list[Any] = [None] * (n * width)
    columns: tuple[list[Any], ...] = (
        batch.keys, batch.t_us, batch.officer, batch.x, batch.y, batch.accuracy,
        batch.raw_json, ["reported" if r else "none" for r in batch.reported])
    for k, values in enumerate(columns):
        flat[k::width] = values
    shared = [site, batch.source, received]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        stored: list[tuple[int, str]] = []
        for i in range(0, n, _SQLITE_CHUNK):
            keys = batch.keys[i : i + _SQLITE_CHUNK]
            cursor.execute(_sqlite_fix_sql(len(keys)),
                           shared + flat[i * width : (i + len(keys)) * width])
            stored += _stored(cursor, keys)
        return stored
    finally:
        cursor.close()


def _stored(cursor: Any, keys: list[str]) -> list[tuple[int, str]]:
    """``(id, key)`` of the rows the insert of ``keys`` just stored (see sqlite_append)."""
    n = cursor.rowcount
    if n <= 0:
        return []
    last = int(cursor.lastrowid or 0)
    if n == len(keys):
        return list(zip(range(last - n + 1, last + 1), keys, strict=True))
    return list(cursor.execute("SELECT id, key FROM events WHERE id BETWEEN ? AND ? ORDER BY id",
                               (last - n + 1, last)).fetchall())


def _sqlite_sql(n: int) -> str:
    sql = _SQLITE_SQL.get(n)
    if sql is None:
        sql = _SQLITE_SQL[n] = (
            f"INSERT INTO events ({_COLUMN_LIST}) VALUES "
            + ",".join([_SQLITE_ROW] * n)
            + " ON CONFLICT (site, t_us, key) DO NOTHING"
        )
    return sql


def sqlite_append(conn: Connection, params: list[tuple[Any, ...]]) -> list[tuple[int, str]]:
    """Insert the rows (first occurrence of a key wins); returns ``(id, key)`` of those
    stored, in insertion order.

    Hand-built multi-row VALUES on the driver cursor: SQLAlchemy's per-row parameter
    processing costs more than SQLite's insert itself on this hot path. No RETURNING:
    each returned row was a step of its own, and the driver lets go of the GIL at every
    step, so the store thread queued for it 2 000 times a batch behind the event loop
    (issue 25). An ``id`` is the rowid (no AUTOINCREMENT), so the rows one statement
    inserts take consecutive ids ending at ``lastrowid``; where some were skipped
    (re-sent keys), those ids are read back with their keys by rowid range.
    """
    flat = [v for row in params for v in row]
    return _sqlite_append_flat(conn, flat, [r[2] for r in params])


def _sqlite_append_flat(conn: Connection, flat: list[Any], keys: list[str]
                       ) -> list[tuple[int, str]]:
    # The rows as one flat list of values (``keys``: theirs).
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        stored: list[tuple[int, str]] = []
        for i in range(0, len(keys), _SQLITE_CHUNK):
            chunk = keys[i : i + _SQLITE_CHUNK]
            cursor.execute(_sqlite_sql(len(chunk)),
                           flat[i * _WIDTH : (i + len(chunk)) * _WIDTH])
            stored += _stored(cursor, chunk)
        return stored
    finally:
        cursor.close()


def postgresql_append(conn: Connection, params: list[tuple[Any, ...]]) -> list[tuple[int, str]]:
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
                "ORDER BY ord ON CONFLICT (site, t_us, key) DO NOTHING RETURNING id, key"
            )
            # The temp table empties itself at commit (ON COMMIT DELETE ROWS).
            return [(int(r[0]), r[1]) for r in cur.fetchall()]
    except BaseException:
        if created_here:
            # The rollback will undo the CREATE too.
            record.info.pop(_PG_TEMP_FLAG, None)
        raise


def event_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    raw = out.get("raw")
    if raw is not None:
        out["raw"] = orjson.loads(raw)
    return out
