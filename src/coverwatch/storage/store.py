"""The live store: one object holding every repository of the storage package.

Open it with :func:`open_store`. With no URL it is a SQLite file
``<data_dir>/coverwatch.db`` that migrates itself to the newest schema on open;
a ``postgresql://`` URL uses psycopg 3 and expects ``coverwatch db upgrade``
(:func:`upgrade`) to have been run. Every method is one transaction, committed
before it returns, so an acknowledged event is durable.

:class:`Store` is the composition of the repositories, one per concern, each a
class in its own module: events (:mod:`~coverwatch.storage.events`), alert
records (:mod:`~coverwatch.storage.alerts`), server state
(:mod:`~coverwatch.storage.state`), users, devices, API tokens and sessions,
orders and shifts (:mod:`~coverwatch.storage.briefing`), contacts, deliveries,
checkpoints and holds (:mod:`~coverwatch.storage.keeping`), incidents, device reports,
dead letters and the audit log. They share one engine and one site
(:class:`~coverwatch.storage.base.StoreBase`).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from coverwatch.errors import StoreError
from coverwatch.storage.alerts import AlertRepository, InvalidAlertRecordError
from coverwatch.storage.apitokens import ApiTokenRepository
from coverwatch.storage.audit import AuditRepository
from coverwatch.storage.auditkeys import default_key_path, load_keyring
from coverwatch.storage.base import make_engine, normalise_url
from coverwatch.storage.briefing import BriefingRepository
from coverwatch.storage.contacts import ContactRepository
from coverwatch.storage.deadletters import DeadLetterRepository
from coverwatch.storage.deliveries import DeliveryRepository
from coverwatch.storage.devicereports import DeviceReportRepository
from coverwatch.storage.devices import DeviceRepository
from coverwatch.storage.eventrows import InvalidEventError, event_digest, event_key, row_key
from coverwatch.storage.events import AppendResult, EventRepository
from coverwatch.storage.incidents import IncidentRepository
from coverwatch.storage.keeping import KeepingRepository
from coverwatch.storage.private import private_data_dir
from coverwatch.storage.schema import (
    DB_FILENAME,
    alembic_config,
    current_revision,
    head_revision,
    sqlite_url,
    upgrade,
    upgrade_engine,
)
from coverwatch.storage.sessions import SessionRepository
from coverwatch.storage.state import StateRepository
from coverwatch.storage.tables import DEFAULT_SITE
from coverwatch.storage.users import UserRepository

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
    "row_key",
    "sqlite_url",
    "upgrade",
]


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
            upgrade_engine(engine)
        current, head = current_revision(engine), head_revision()
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



class Store(
    EventRepository,
    AlertRepository,
    StateRepository,
    UserRepository,
    DeviceRepository,
    ApiTokenRepository,
    SessionRepository,
    BriefingRepository,
    ContactRepository,
    DeliveryRepository,
    IncidentRepository,
    KeepingRepository,
    DeviceReportRepository,
    DeadLetterRepository,
    AuditRepository,
):
    """The persistent store: every repository over one engine, bound to one site.

    Safe to share between the threads of one process. A module that needs one
    concern only may type its argument as that repository (``StateRepository``,
    ``EventRepository``, …): a ``Store`` is each of them.
    """

    def schema_revision(self) -> str | None:
        """The revision the database's schema is at (None: not migrated)."""
        return current_revision(self.engine)

    def for_site(self, key: str) -> Store:
        """A store bound to ``key`` sharing this one's connections and audit key."""
        other = Store(self.engine, key)
        other.audit_keyring = self.audit_keyring
        return other
