"""What the people, devices, tokens and sessions repositories share.

Passwords are hashed with argon2 (slow on purpose: they are guessable).
API tokens may carry the token-only role ``ingest`` (systems that send events
and never log in); users may not. Device, API and session tokens are 32 random
bytes from :mod:`secrets`; being unguessable, they are stored as a plain
SHA-256 hash, which lets a lookup be one indexed query. Plaintext tokens are
returned once, at creation, and never stored. Each token carries a short
prefix (``cwd_``, ``cwt_``, ``cws_``) so that one pasted into a log or an audit
entry can be recognised.

The repositories themselves: :mod:`~coverwatch.storage.users`,
:mod:`~coverwatch.storage.devices`, :mod:`~coverwatch.storage.apitokens` and
:mod:`~coverwatch.storage.sessions`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from coverwatch.domain.roles import ROLES, TOKEN_ROLES
from coverwatch.errors import StoreError

__all__ = [
    "MIN_PASSWORD_CHARS",
    "TOKEN_PREFIXES",
    "DuplicateNameError",
    "InvalidRolesError",
    "NotFoundError",
    "csrf_matches",
    "hash_token",
    "insert_unique",
    "new_token",
    "normalise_roles",
    "password_problem",
    "roles_from_text",
    "roles_text",
]

TOKEN_PREFIXES = {"device": "cwd_", "api": "cwt_", "session": "cws_"}


class DuplicateNameError(StoreError, ValueError):
    """A user, device or API token with that name already exists."""


class InvalidRolesError(StoreError, ValueError):
    """A role outside ROLES (users) or TOKEN_ROLES (API tokens)."""


class NotFoundError(StoreError, LookupError):
    """No user, device or API token has the given name."""


def new_token(kind: str) -> str:
    """A fresh high-entropy token (32 random bytes, URL-safe) with the kind's prefix."""
    return TOKEN_PREFIXES[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token: what the database keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_matches(expected: str, presented: str | None) -> bool:
    """Constant-time CSRF token comparison."""
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


MIN_PASSWORD_CHARS = 12


def password_problem(username: str, password: str) -> str | None:
    """Why a person may not choose ``password`` (None if they may).

    At least 12 characters, at least 5 different ones (so not "aaaaaaaaaaaa"
    or "abababababab"), and not the username, however spelt (nor containing it, if
    it is 4 characters or more).
    """
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must be at least {MIN_PASSWORD_CHARS} characters"
    if len(set(password)) < 5:
        return "the password must use at least 5 different characters"
    folded, name = password.casefold(), username.casefold()
    # A short username (say "sam") may well occur in a good passphrase by chance.
    if name and (folded == name or (len(name) >= 4 and name in folded)):
        return "the password must not contain the username"
    return None


def normalise_roles(roles: Iterable[str], allowed: Iterable[str] = ROLES, *,
                    empty_ok: bool = False) -> frozenset[str]:
    """Check ``roles`` is a subset of ``allowed`` (a single string is one role).

    ``allowed`` is ROLES for users and TOKEN_ROLES for API tokens. ``empty_ok``:
    none is fine (a user with roles at single sites only, or roles removed at a site).
    """
    found = frozenset([roles] if isinstance(roles, str) else roles)
    if not found and not empty_ok:
        raise InvalidRolesError("give at least one role (a user or token with none can do nothing)")
    allowed = tuple(allowed)
    unknown = found - set(allowed)
    token_only = unknown & (set(TOKEN_ROLES) - set(allowed))
    if token_only:
        raise InvalidRolesError(
            f"{', '.join(sorted(token_only))} is a token-only role (for systems that send "
            "events); give it to an API token, not a user"
        )
    if unknown:
        raise InvalidRolesError(
            f"unknown role(s) {', '.join(sorted(unknown))} (expected {', '.join(allowed)})"
        )
    return found


def roles_text(roles: frozenset[str]) -> str:
    return ",".join(sorted(roles))


def roles_from_text(text: str) -> frozenset[str]:
    return frozenset(r for r in text.split(",") if r)


def insert_unique(conn: Connection, stmt: Any, what: str, name: str) -> Any:
    try:
        return conn.execute(stmt)
    except IntegrityError:
        raise DuplicateNameError(f"a {what} named {name!r} already exists") from None
