"""Users, devices, service tokens and sessions.

Passwords are hashed with argon2 (slow on purpose: they are guessable).
API tokens may carry the token-only role ``ingest`` (systems that send events
and never log in); users may not. Device, API and session tokens are 32 random
bytes from :mod:`secrets`; being unguessable, they are stored as a plain
SHA-256 hash, which lets a lookup be one indexed query. Plaintext tokens are
returned once, at creation, and never stored. Each token carries a short
prefix (``cwd_``, ``cwt_``, ``cws_``) so that one pasted into a log or an audit
entry can be recognised.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError

from coverwatch.domain.roles import ROLES, TOKEN_ROLES
from coverwatch.errors import StoreError
from coverwatch.storage.base import StoreBase
from coverwatch.storage.base import now_us as wall_clock_us
from coverwatch.storage.tables import (
    api_tokens,
    devices,
    sessions,
    site_roles,
    users,
)

__all__ = [
    "TOKEN_PREFIXES",
    "ApiToken",
    "AuthMixin",
    "Device",
    "DuplicateNameError",
    "InvalidRolesError",
    "NewSession",
    "NotFoundError",
    "Revoked",
    "SessionInfo",
    "User",
    "csrf_matches",
    "hash_token",
    "new_token",
    "normalise_roles",
    "password_problem",
]

TOKEN_PREFIXES = {"device": "cwd_", "api": "cwt_", "session": "cws_"}


class DuplicateNameError(StoreError, ValueError):
    """A user, device or API token with that name already exists."""


class InvalidRolesError(StoreError, ValueError):
    """A role outside ROLES (users) or TOKEN_ROLES (API tokens)."""


class NotFoundError(StoreError, LookupError):
    """No user, device or API token has the given name."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    roles: frozenset[str]
    active: bool
    created_us: int


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    name: str
    officer: str | None
    active: bool
    created_us: int
    site: str = "default"  # the store key of the site it belongs to


@dataclass(frozen=True, slots=True)
class Revoked:
    """The outcome of revoking a device: the device, and whether it was active until now."""

    device: Device
    changed: bool


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    name: str
    roles: frozenset[str]
    active: bool
    created_us: int


class NewSession(NamedTuple):
    """A session just created: the cookie value (shown once) and its CSRF token."""

    token: str
    csrf_token: str
    expires_us: int


@dataclass(frozen=True, slots=True)
class SessionInfo:
    user: User
    csrf_token: str
    created_us: int
    expires_us: int


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


def _roles_text(roles: frozenset[str]) -> str:
    return ",".join(sorted(roles))


def _roles_set(text: str) -> frozenset[str]:
    return frozenset(r for r in text.split(",") if r)


def _user(row: Any) -> User:
    return User(
        row.id, row.username, _roles_set(row.roles), bool(row.active), row.created_us,
    )  # fmt: skip


def _device(row: Any) -> Device:
    return Device(row.id, row.name, row.officer, bool(row.active), row.created_us, row.site)


def _api_token(row: Any) -> ApiToken:
    return ApiToken(row.id, row.name, _roles_set(row.roles), bool(row.active), row.created_us)


def _insert_unique(conn: Connection, stmt: Any, what: str, name: str) -> Any:
    try:
        return conn.execute(stmt)
    except IntegrityError:
        raise DuplicateNameError(f"a {what} named {name!r} already exists") from None


class AuthMixin(StoreBase):
    """User, device, API-token and session methods of the store."""

    password_hasher: PasswordHasher = PasswordHasher()

    @cached_property
    def _dummy_hash(self) -> str:
        # Verified against when the user does not exist, so timing does not reveal usernames.
        return self.password_hasher.hash(secrets.token_urlsafe(16))

    # -- users --------------------------------------------------------------

    def create_user(
        self,
        username: str,
        password: str,
        roles: Iterable[str],
        *,
        created_us: int | None = None,
        site_roles_only: bool = False,
    ) -> User:
        """Create a user with a subset of ROLES (not the token-only "ingest").

        ``site_roles_only``: no deployment-wide role; give roles per site next
        (:meth:`set_site_roles`).

        Contacts (where the notifier reaches them) are set separately:
        ``ContactsMixin.set_contacts``.
        """
        if not username:
            raise ValueError("username must not be empty")
        if not password:
            raise ValueError("password must not be empty")
        role_set = normalise_roles(roles, empty_ok=site_roles_only)
        pw_hash = self.password_hasher.hash(password)
        stmt = (
            users.insert()
            .values(
                username=username,
                password_hash=pw_hash,
                roles=_roles_text(role_set),
                active=True,
                created_us=wall_clock_us() if created_us is None else created_us,
            )
            .returning(*users.c)
        )
        with self._write() as conn:
            row = _insert_unique(conn, stmt, "user", username).one()
        return _user(row)

    def get_user(self, username: str) -> User | None:
        with self._read() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        return None if row is None else _user(row)

    def get_user_by_id(self, user_id: int) -> User | None:
        with self._read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return None if row is None else _user(row)

    def list_users(self) -> list[User]:
        with self._read() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.username))]

    def verify_password(self, username: str, password: str) -> User | None:
        """The active user if the password is right, else None.

        Takes the same time whether or not the user exists; rehashes the
        stored hash when the argon2 parameters have been raised since.
        """
        with self._read() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        stored = self._dummy_hash if row is None else row.password_hash
        try:
            self.password_hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or not row.active:
            return None
        if self.password_hasher.check_needs_rehash(stored):
            with self._write() as conn:
                conn.execute(
                    update(users)
                    .where(users.c.id == row.id, users.c.password_hash == stored)
                    .values(password_hash=self.password_hasher.hash(password))
                )
        return _user(row)

    def set_password(self, username: str, password: str) -> None:
        """Replace a user's password and end their sessions."""
        if not password:
            raise ValueError("password must not be empty")
        pw_hash = self.password_hasher.hash(password)
        with self._write() as conn:
            user_id = self._user_id(conn, username)
            conn.execute(update(users).where(users.c.id == user_id).values(password_hash=pw_hash))
            conn.execute(delete(sessions).where(sessions.c.user_id == user_id))

    def set_roles(self, username: str, roles: Iterable[str]) -> User:
        role_set = normalise_roles(roles)
        with self._write() as conn:
            user_id = self._user_id(conn, username)
            row = conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(roles=_roles_text(role_set))
                .returning(*users.c)
            ).one()
        return _user(row)

    def set_site_roles(self, username: str, site: str, roles: Iterable[str]) -> frozenset[str]:
        """The user's roles at one site (store key ``site``); none removes them there."""
        role_set = normalise_roles(roles, empty_ok=True)
        with self._write() as conn:
            user_id = self._user_id(conn, username)
            conn.execute(delete(site_roles).where(site_roles.c.user_id == user_id,
                                                  site_roles.c.site == site))
            if role_set:
                conn.execute(site_roles.insert().values(user_id=user_id, site=site,
                                                        roles=_roles_text(role_set)))
        return role_set

    def site_roles_of(self, username: str) -> dict[str, frozenset[str]]:
        """The user's roles per site (store keys), beside their deployment-wide ones."""
        with self._read() as conn:
            rows = conn.execute(
                select(site_roles.c.site, site_roles.c.roles)
                .join(users, users.c.id == site_roles.c.user_id)
                .where(users.c.username == username)
            ).all()
        return {site: _roles_set(roles) for site, roles in rows}

    def deactivate_user(self, username: str) -> User:
        """Stop a user from logging in and end their sessions (the row stays, for the audit)."""
        with self._write() as conn:
            user_id = self._user_id(conn, username)
            row = conn.execute(
                update(users).where(users.c.id == user_id).values(active=False).returning(*users.c)
            ).one()
            conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
        return _user(row)

    @staticmethod
    def _user_id(conn: Connection, username: str) -> int:
        user_id = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
        if user_id is None:
            raise NotFoundError(f"no user named {username!r}")
        return int(user_id)

    # -- devices ------------------------------------------------------------

    def create_device(
        self, name: str, officer: str | None, *, created_us: int | None = None
    ) -> tuple[Device, str]:
        """Register a device; returns it and its token (plaintext, shown this once)."""
        if not name:
            raise ValueError("device name must not be empty")
        token = new_token("device")
        stmt = (
            devices.insert()
            .values(
                name=name,
                site=self.site,
                officer=officer,
                token_hash=hash_token(token),
                active=True,
                created_us=wall_clock_us() if created_us is None else created_us,
            )
            .returning(*devices.c)
        )
        with self._write() as conn:
            row = _insert_unique(conn, stmt, "device", name).one()
        return _device(row), token

    def device_for_token(self, token: str) -> Device | None:
        """The active device holding ``token``, or None."""
        with self._read() as conn:
            row = conn.execute(
                select(devices).where(
                    devices.c.token_hash == hash_token(token), devices.c.active.is_(True)
                )
            ).first()
        return None if row is None else _device(row)

    def rotate_device_token(self, name: str) -> str:
        """Give a device a new token (the old one stops working); returns it once."""
        token = new_token("device")
        with self._write() as conn:
            done = conn.execute(
                update(devices).where(devices.c.name == name).values(token_hash=hash_token(token))
            ).rowcount
        if not done:
            raise NotFoundError(f"no device named {name!r}")
        return token

    def set_device_officer(self, name: str, officer: str | None) -> Device:
        with self._write() as conn:
            row = conn.execute(
                update(devices)
                .where(devices.c.name == name)
                .values(officer=officer)
                .returning(*devices.c)
            ).first()
        if row is None:
            raise NotFoundError(f"no device named {name!r}")
        return _device(row)

    def deactivate_device(self, name: str) -> Revoked:
        """Revoke a device's token; ``changed`` is False if it was already revoked."""
        with self._write() as conn:
            row = conn.execute(
                update(devices).where(devices.c.name == name, devices.c.active.is_(True))
                .values(active=False).returning(*devices.c)
            ).first()  # fmt: skip
            if row is not None:
                return Revoked(_device(row), True)
            row = conn.execute(select(devices).where(devices.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no device named {name!r}")
        return Revoked(_device(row), False)

    def list_devices(self) -> list[Device]:
        with self._read() as conn:
            return [_device(r) for r in conn.execute(select(devices).order_by(devices.c.name))]

    # -- API tokens (services) ----------------------------------------------

    def create_api_token(
        self, name: str, roles: Iterable[str], *, created_us: int | None = None
    ) -> tuple[ApiToken, str]:
        """Create a service token; returns it and the plaintext (shown this once).

        ``roles`` is a subset of TOKEN_ROLES: a person's roles, or "ingest".
        """
        if not name:
            raise ValueError("token name must not be empty")
        role_set = normalise_roles(roles, TOKEN_ROLES)
        token = new_token("api")
        stmt = (
            api_tokens.insert()
            .values(
                name=name,
                token_hash=hash_token(token),
                roles=_roles_text(role_set),
                active=True,
                created_us=wall_clock_us() if created_us is None else created_us,
            )
            .returning(*api_tokens.c)
        )
        with self._write() as conn:
            row = _insert_unique(conn, stmt, "API token", name).one()
        return _api_token(row), token

    def api_token_for(self, token: str) -> ApiToken | None:
        """The active API token matching ``token``, or None."""
        with self._read() as conn:
            row = conn.execute(
                select(api_tokens).where(
                    api_tokens.c.token_hash == hash_token(token), api_tokens.c.active.is_(True)
                )
            ).first()
        return None if row is None else _api_token(row)

    def revoke_api_token(self, name: str) -> ApiToken:
        with self._write() as conn:
            row = conn.execute(
                update(api_tokens).where(api_tokens.c.name == name).values(active=False)
                .returning(*api_tokens.c)
            ).first()  # fmt: skip
        if row is None:
            raise NotFoundError(f"no API token named {name!r}")
        return _api_token(row)

    def list_api_tokens(self) -> list[ApiToken]:
        with self._read() as conn:
            q = select(api_tokens).order_by(api_tokens.c.name)
            return [_api_token(r) for r in conn.execute(q)]

    # -- sessions -----------------------------------------------------------

    def create_session(self, user_id: int, *, now_us: int, ttl_us: int) -> NewSession:
        """Start a session for a user; returns the cookie token and its CSRF token."""
        if ttl_us <= 0:
            raise ValueError("session ttl must be positive")
        token = new_token("session")
        csrf = secrets.token_urlsafe(32)
        expires = now_us + ttl_us
        with self._write() as conn:
            conn.execute(
                sessions.insert().values(
                    id=hash_token(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    created_us=now_us,
                    expires_us=expires,
                )
            )
        return NewSession(token, csrf, expires)

    def session_for(self, token: str, *, now_us: int) -> SessionInfo | None:
        """The live session for a cookie token: not expired, user still active."""
        q = (
            select(
                sessions.c.csrf_token,
                sessions.c.created_us.label("session_created_us"),
                sessions.c.expires_us,
                users,
            )
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id == hash_token(token))
        )
        with self._read() as conn:
            row = conn.execute(q).first()
        if row is None or row.expires_us <= now_us or not row.active:
            return None
        return SessionInfo(_user(row), row.csrf_token, row.session_created_us, row.expires_us)

    def delete_session(self, token: str) -> bool:
        """End a session (logout); True if it existed."""
        with self._write() as conn:
            done = conn.execute(delete(sessions).where(sessions.c.id == hash_token(token)))
        return bool(done.rowcount)

    def delete_expired_sessions(self, *, now_us: int) -> int:
        with self._write() as conn:
            done = conn.execute(delete(sessions).where(sessions.c.expires_us <= now_us))
        return int(done.rowcount)
