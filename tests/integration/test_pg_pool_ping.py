"""A pooled PostgreSQL connection is pinged only after it sat idle (storage/base.py).

The ping replaced SQLAlchemy's ``pool_pre_ping``, which cost a round trip per
transaction: a connection idle past ``PING_IDLE_S`` and killed meanwhile (a server
restart, an idle timeout) is replaced before use; one used a moment ago is not pinged,
and if it died meanwhile its transaction fails once and the pool replaces it.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from conftest import POSTGRES_URL, _postgres_admin
from coverwatch.storage import base
from coverwatch.storage.base import make_engine


def _pooled_backend(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(pid: int) -> None:
    admin = _postgres_admin()
    try:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        admin.close()


@pytest.fixture
def engine() -> Any:
    _postgres_admin().close()  # skips (or fails under CI) without PostgreSQL
    eng = make_engine(POSTGRES_URL)
    yield eng
    eng.dispose()


def test_an_idle_connection_killed_meanwhile_is_replaced_before_use(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _pooled_backend(engine)
    _kill(first)
    monkeypatch.setattr(base, "PING_IDLE_S", 0.0)  # it has been idle long enough
    assert _pooled_backend(engine) != first  # no error reached the caller


def test_a_connection_used_a_moment_ago_is_not_pinged(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _pooled_backend(engine)
    _kill(first)
    monkeypatch.setattr(base, "PING_IDLE_S", 3600.0)
    # No ping: the dead connection is used, fails once, and is replaced.
    with pytest.raises(OperationalError):
        _pooled_backend(engine)
    assert _pooled_backend(engine) != first
