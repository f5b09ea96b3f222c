"""Database fixtures: every store test runs against SQLite and PostgreSQL.

PostgreSQL comes from ``COVERWATCH_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own schema,
dropped afterwards, so runs never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from services import drop_schema, require_service, service_unavailable
from sqlalchemy.engine import make_url

from coverwatch.storage import Store, open_store, upgrade

POSTGRES_URL = os.environ.get(
    "COVERWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class Database:
    """Where a test's store lives: ``url`` None means SQLite in ``data_dir``."""

    backend: str
    url: str | None
    data_dir: Path

    def open(self) -> Store:
        return open_store(self.url, self.data_dir)


def _postgres_admin() -> psycopg.Connection[Any]:
    parsed = make_url(POSTGRES_URL)
    require_service("PostgreSQL", parsed.host or "127.0.0.1", parsed.port or 5432)
    try:
        return psycopg.connect(
            parsed.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        )
    except psycopg.OperationalError as exc:
        service_unavailable("PostgreSQL", f"cannot connect to {POSTGRES_URL}: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, empty database (not yet migrated) on each backend."""
    if request.param == "sqlite":
        yield Database("sqlite", None, tmp_path)
        return
    admin = _postgres_admin()
    schema = f"cw_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield Database("postgresql", url.render_as_string(hide_password=False), tmp_path)
    finally:
        drop_schema(admin, schema)
        admin.close()


@pytest.fixture
def migrated(database: Database) -> Database:
    """The database upgraded to the newest schema (``coverwatch db upgrade``)."""
    upgrade(database.url, database.data_dir)
    return database


@pytest.fixture
def store(migrated: Database) -> Iterator[Store]:
    s = migrated.open()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def second_store(migrated: Database) -> Iterator[Store]:
    """Another store (its own engine and pool) on the same database."""
    s = migrated.open()
    try:
        yield s
    finally:
        s.close()
