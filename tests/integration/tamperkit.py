"""Tampering as an attacker with the database owner's rights, for tests of what verify finds.

On PostgreSQL the audit and log tables refuse UPDATE and DELETE (migration 0014); an owner
(or superuser) can still switch the triggers off, which is what these tests model:
``session_replication_role = replica`` skips ordinary triggers for the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from coverwatch.storage import Store

__all__ = ["as_owner"]


@contextmanager
def as_owner(store: Store) -> Iterator[Connection]:
    """A transaction on ``store``'s database with the append-only triggers bypassed."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        yield conn
