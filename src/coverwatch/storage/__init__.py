"""Persistence for the live server: events, alert records, server state, users,
devices, tokens, sessions and the hash-chained audit log (SQLAlchemy Core +
Alembic; SQLite by default, PostgreSQL in production). Start with :func:`open_store`.

:class:`Store` is the composition of one repository per concern (``EventRepository``,
``AlertRepository``, ``StateRepository``, ``UserRepository``, …); a module that
needs one concern only types its argument as that repository.
"""

from coverwatch.domain.roles import ROLES, TOKEN_ROLES
from coverwatch.storage.alerts import AlertRepository, InvalidAlertRecordError
from coverwatch.storage.apitokens import ApiToken, ApiTokenRepository
from coverwatch.storage.audit import (
    AuditEntry,
    AuditHead,
    AuditRepository,
    VerifyResult,
    audit_head,
    record_device_change,
    record_login,
    record_logout,
    record_site_reload,
    record_user_change,
    verify_audit,
)
from coverwatch.storage.auth import (
    DuplicateNameError,
    InvalidRolesError,
    NotFoundError,
    csrf_matches,
    password_problem,
)
from coverwatch.storage.briefing import BriefingRepository
from coverwatch.storage.contacts import ContactRepository, Reach
from coverwatch.storage.deadletters import DeadLetterRepository
from coverwatch.storage.deliveries import DeliveryRecord, DeliveryRepository
from coverwatch.storage.devicereports import DeviceReportRepository
from coverwatch.storage.devices import Device, DeviceRepository
from coverwatch.storage.eventrows import InvalidEventError, row_key
from coverwatch.storage.events import AppendResult, EventRepository
from coverwatch.storage.incidents import IncidentRepository
from coverwatch.storage.keeping import KeepingRepository
from coverwatch.storage.schema import head_revision, upgrade
from coverwatch.storage.sessions import NewSession, SessionInfo, SessionRepository
from coverwatch.storage.state import StateRepository
from coverwatch.storage.store import Store, open_store
from coverwatch.storage.users import User, UserRepository

__all__ = [
    "ROLES",
    "TOKEN_ROLES",
    "AlertRepository",
    "ApiToken",
    "ApiTokenRepository",
    "AppendResult",
    "AuditEntry",
    "AuditHead",
    "AuditRepository",
    "BriefingRepository",
    "ContactRepository",
    "DeadLetterRepository",
    "DeliveryRecord",
    "DeliveryRepository",
    "Device",
    "DeviceReportRepository",
    "DeviceRepository",
    "DuplicateNameError",
    "EventRepository",
    "IncidentRepository",
    "InvalidAlertRecordError",
    "InvalidEventError",
    "InvalidRolesError",
    "KeepingRepository",
    "NewSession",
    "NotFoundError",
    "Reach",
    "SessionInfo",
    "SessionRepository",
    "StateRepository",
    "Store",
    "User",
    "UserRepository",
    "VerifyResult",
    "audit_head",
    "csrf_matches",
    "head_revision",
    "open_store",
    "password_problem",
    "record_device_change",
    "record_login",
    "record_logout",
    "record_site_reload",
    "record_user_change",
    "row_key",
    "upgrade",
    "verify_audit",
]
