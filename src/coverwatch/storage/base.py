"""Engine setup and transaction helpers shared by the store's parts.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on disk before
the caller acknowledges the event) and a busy timeout; its transactions are
begun explicitly so that write transactions take the write lock up front
(``BEGIN IMMEDIATE``) instead of failing on a lock upgrade. PostgreSQL URLs are
routed to psycopg 3; a pooled PostgreSQL connection is pinged only when it has
sat idle (:data:`PING_IDLE_S`): one that was in use a moment ago costs no extra round
trip, and one a restart of the server left dead is still replaced before use.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url

from coverwatch.clock import wall_clock_us

__all__ = [
    "PING_IDLE_S",
    "SQLITE_BUSY_TIMEOUT_MS",
    "StoreBase",
    "dialect_insert",
    "make_engine",
    "normalise_url",
    "now_us",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A PostgreSQL connection back in the pool longer than this is pinged before its next use
# (SQLAlchemy's pool_pre_ping pinged every checkout: a round trip per transaction).
PING_IDLE_S = 1.0
_IMMEDIATE = "coverwatch_immediate"


now_us = wall_clock_us  # the store's name for the one clock (coverwatch.clock)


def normalise_url(url: str | URL) -> URL:
    """Route ``postgresql://`` (and ``postgres://``) to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def dialect_insert(engine_dialect: str) -> Any:
    """The dialect's ``insert`` (it has ``on_conflict_do_nothing`` / ``_do_update``)."""
    return postgresql.insert if engine_dialect == "postgresql" else sqlite.insert


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module; "begin" below issues BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# One writer at a time per SQLite database within this process, queued here rather than
# in SQLite's busy handler, which sleeps (up to 100 ms a try) while the writer ahead of
# it commits: with a hundred sites each saving its state, the waits, not the writes,
# were most of the time. Other processes (the CLI beside a server) still meet the busy timeout.
_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


@contextmanager
def _queued(engine: Engine) -> Iterator[None]:
    """Wait for this process's writer ahead, at most the busy timeout (then SQLite's own
    wait decides, as it would without the queue: never a hang)."""
    writers = _WRITERS.get(engine)
    held = writers is not None and writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        yield
    finally:
        if held:
            assert writers is not None
            writers.release()


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` with coverwatch's connection settings applied."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        _WRITERS[engine] = threading.RLock()
        return engine
    engine = create_engine(parsed)
    event.listen(engine, "checkout", _ping_if_idle)
    event.listen(engine, "checkin", _note_checkin)
    return engine


def _note_checkin(dbapi_conn: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: Any, proxy: Any) -> None:
    """A connection idle in the pool since before :data:`PING_IDLE_S` ago is pinged; a
    dead one is discarded and the pool gives a new one (DisconnectionError's contract)."""
    since = record.info.get("checked_in")
    if since is None or time.monotonic() - since < PING_IDLE_S:
        return  # new (just connected), or in use a moment ago
    try:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT 1")
        dbapi_conn.rollback()  # leave no transaction open from the ping
    except Exception as e:
        raise exc.DisconnectionError(f"pooled connection dead: {e}") from e


class StoreBase:
    """Holds the engine and the site; every repository of the store builds on it."""

    def __init__(self, engine: Engine, site: str = "default") -> None:
        self.engine = engine
        # Rows of per-site tables are written with, and read for, this site only.
        self.site = site
        self.dialect = engine.dialect.name
        # Serialises audit appends within this process; the database lock covers others.
        self._audit_lock = threading.Lock()
        # Distributed mode (storage/busoutbox.py): run inside every write transaction (the
        # owner's fence) and inside the transaction that stores events (the outbox).
        self.fence_check: Callable[[Connection], None] | None = None
        self.after_append: Callable[[Connection, Sequence[tuple[int, str]], int], None] | \
            None = None
        self._pinned = threading.local()  # this thread's snapshot (see snapshot())

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction, committed when the block exits without error."""
        with _queued(self.engine), self.engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                if self.fence_check is not None:
                    self.fence_check(conn)
                yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction (one consistent snapshot); inside :meth:`snapshot`, on
        its thread, that snapshot's."""
        pinned: Connection | None = getattr(self._pinned, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read of this thread inside the block (each :meth:`reading`) sees one
        consistent snapshot of the database, taken on entry: an evidence pack's members
        agree with each other whatever is written meanwhile (writes, on their own
        connections, proceed and stay unseen). SQLite: one WAL read transaction, its
        snapshot fixed by a first read; PostgreSQL: REPEATABLE READ. Nested: the outer one."""
        if getattr(self._pinned, "conn", None) is not None:
            yield
            return
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                # The first statement fixes the snapshot (a read of the file, for SQLite).
                conn.exec_driver_sql("SELECT count(*) FROM sqlite_master"
                                     if self.dialect == "sqlite" else "SELECT 1")
                self._pinned.conn = conn
                try:
                    yield
                finally:
                    self._pinned.conn = None

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()
