"""Alembic environment for the coverwatch store.

Run through :func:`coverwatch.storage.store.upgrade` or ``open_store``, which
pass an open connection in ``config.attributes["connection"]`` (so SQLite
pragmas and PostgreSQL search paths apply). A bare ``sqlalchemy.url`` option
works too, for running ``alembic`` by hand with a Config built in Python.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from coverwatch.storage.tables import metadata

__all__: list[str] = []


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection or sqlalchemy.url given to the coverwatch migrations")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("coverwatch migrations run online only")
run_migrations_online()
