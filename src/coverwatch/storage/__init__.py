"""Persistence for the live server: events, alert records, server state, users,
devices, tokens, sessions and the hash-chained audit log (SQLAlchemy Core +
Alembic; SQLite by default, PostgreSQL in production). Start with :func:`open_store`.
"""

from coverwatch.domain.roles import ROLES, TOKEN_ROLES
from coverwatch.storage.audit import (
    AuditEntry,
    AuditHead,
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
    ApiToken,
    Device,
    DuplicateNameError,
    InvalidRolesError,
    NewSession,
    NotFoundError,
    SessionInfo,
    User,
    csrf_matches,
    password_problem,
)
from coverwatch.storage.contacts import DeliveryRecord, Reach
from coverwatch.storage.store import (
    AppendResult,
    InvalidAlertRecordError,
    InvalidEventError,
    Store,
    head_revision,
    open_store,
    row_key,
    upgrade,
)

__all__ = [
    "ROLES",
    "TOKEN_ROLES",
    "ApiToken",
    "AppendResult",
    "AuditEntry",
    "AuditHead",
    "DeliveryRecord",
    "Device",
    "DuplicateNameError",
    "InvalidAlertRecordError",
    "InvalidEventError",
    "InvalidRolesError",
    "NewSession",
    "NotFoundError",
    "Reach",
    "SessionInfo",
    "Store",
    "User",
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
