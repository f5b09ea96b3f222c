"""Shared guard for integration tests that need a running service.

``require_service("PostgreSQL", "127.0.0.1", 5432)`` skips the test when the
service is unreachable, with the reason; under ``CI=true`` it fails instead,
because CI is expected to provide every service and a silent skip there would
hide a broken environment.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, NoReturn

import pytest

__all__ = ["drop_schema", "in_ci", "require_service", "service_unavailable"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def service_unavailable(name: str, reason: str) -> NoReturn:
    """Skip (or, under CI=true, fail) because ``name`` cannot be used."""
    message = f"{name} is not available: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true, so integration services are required)", pytrace=False)
    pytest.skip(message)


def require_service(name: str, host: str, port: int, *, timeout: float = 3.0) -> None:
    """Check a TCP service answers at host:port, else skip/fail via :func:`service_unavailable`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        service_unavailable(name, f"nothing answers at {host}:{port} ({exc})")


def drop_schema(admin: Any, schema: str) -> None:
    """``DROP SCHEMA … CASCADE`` on an autocommit psycopg connection, tried again when it
    deadlocks with a server or task of the test still writing there (PostgreSQL aborts one
    side; the writer's transaction then ends and the drop goes through)."""
    import psycopg

    for attempt in range(5):
        try:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == 4:
                raise
            time.sleep(1.0)
