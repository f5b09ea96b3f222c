"""The people who log in: users, their roles (deployment-wide and per site) and passwords."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, select, update

from coverwatch.storage.auth import (
    NotFoundError,
    insert_unique,
    normalise_roles,
    roles_from_text,
    roles_text,
)
from coverwatch.storage.base import StoreBase
from coverwatch.storage.base import now_us as wall_clock_us
from coverwatch.storage.tables import sessions, site_roles, users

__all__ = ["PasswordMatch", "PasswordRecord", "User", "UserRepository", "user_from_row"]


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    roles: frozenset[str]
    active: bool
    created_us: int



@dataclass(frozen=True, slots=True)
class PasswordRecord:
    """A user's row as a sign-in reads it (None: no such user)."""

    row: Any

    @property
    def stored(self) -> str | None:
        """The stored hash (None: no such user)."""
        return None if self.row is None else str(self.row.password_hash)


@dataclass(frozen=True, slots=True)
class PasswordMatch:
    """A password that matched: the user, the hash it matched, and a renewed hash when the
    argon2 parameters have been raised since that one was made."""

    user: User
    stored: str
    renewed: str | None


def user_from_row(row: Any) -> User:
    return User(
        row.id, row.username, roles_from_text(row.roles), bool(row.active), row.created_us,
    )  # fmt: skip


class UserRepository(StoreBase):
    """Users: who they are, their roles, their passwords (``create_user`` … ``deactivate_user``)."""

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
        ``ContactRepository.set_contacts``.
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
                roles=roles_text(role_set),
                active=True,
                created_us=wall_clock_us() if created_us is None else created_us,
            )
            .returning(*users.c)
        )
        with self._write() as conn:
            row = insert_unique(conn, stmt, "user", username).one()
        return user_from_row(row)

    def get_user(self, username: str) -> User | None:
        with self.reading() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        return None if row is None else user_from_row(row)

    def get_user_by_id(self, user_id: int) -> User | None:
        with self.reading() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return None if row is None else user_from_row(row)

    def list_users(self) -> list[User]:
        with self.reading() as conn:
            q = select(users).order_by(users.c.username)
            return [user_from_row(r) for r in conn.execute(q)]

    def verify_password(self, username: str, password: str) -> User | None:
        """The active user if the password is right, else None.

        Takes the same time whether or not the user exists; rehashes the
        stored hash when the argon2 parameters have been raised since. The
        server runs the three steps apart (:meth:`password_record`, then
        :meth:`match_password` in the password pool, :meth:`renew_password_hash`).
        """
        found = self.match_password(self.password_record(username), password)
        if found is None:
            return None
        self.renew_password_hash(found)
        return found.user

    def password_record(self, username: str) -> PasswordRecord:
        """What a password for ``username`` is checked against (a read, no hashing)."""
        with self.reading() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        return PasswordRecord(row)

    def match_password(self, record: PasswordRecord, password: str) -> PasswordMatch | None:
        """The argon2 work alone (no I/O): the active user if the password is right.

        An unknown user is checked against a dummy hash made with the same
        parameters, so the answer takes as long as for a real one. When the
        parameters have been raised since the stored hash was made, the new
        hash is made here too (for :meth:`renew_password_hash`).
        """
        stored = self._dummy_hash if record.stored is None else record.stored
        try:
            self.password_hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        row = record.row
        if row is None or record.stored is None or not row.active:
            return None
        renewed = (self.password_hasher.hash(password)
                   if self.password_hasher.check_needs_rehash(record.stored) else None)
        return PasswordMatch(user_from_row(row), record.stored, renewed)

    def renew_password_hash(self, found: PasswordMatch) -> None:
        """Store the renewed hash of a matched password (if any; unless changed meanwhile)."""
        if found.renewed is None:
            return
        with self._write() as conn:
            conn.execute(
                update(users)
                .where(users.c.id == found.user.id, users.c.password_hash == found.stored)
                .values(password_hash=found.renewed)
            )

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
                .values(roles=roles_text(role_set))
                .returning(*users.c)
            ).one()
        return user_from_row(row)

    def set_site_roles(self, username: str, site: str, roles: Iterable[str]) -> frozenset[str]:
        """The user's roles at one site (store key ``site``); none removes them there."""
        role_set = normalise_roles(roles, empty_ok=True)
        with self._write() as conn:
            user_id = self._user_id(conn, username)
            conn.execute(delete(site_roles).where(site_roles.c.user_id == user_id,
                                                  site_roles.c.site == site))
            if role_set:
                conn.execute(site_roles.insert().values(user_id=user_id, site=site,
                                                        roles=roles_text(role_set)))
        return role_set

    def site_roles_of(self, username: str) -> dict[str, frozenset[str]]:
        """The user's roles per site (store keys), beside their deployment-wide ones."""
        with self.reading() as conn:
            rows = conn.execute(
                select(site_roles.c.site, site_roles.c.roles)
                .join(users, users.c.id == site_roles.c.user_id)
                .where(users.c.username == username)
            ).all()
        return {site: roles_from_text(roles) for site, roles in rows}

    def deactivate_user(self, username: str) -> User:
        """Stop a user from logging in and end their sessions (the row stays, for the audit)."""
        with self._write() as conn:
            user_id = self._user_id(conn, username)
            row = conn.execute(
                update(users).where(users.c.id == user_id).values(active=False).returning(*users.c)
            ).one()
            conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
        return user_from_row(row)

    @staticmethod
    def _user_id(conn: Connection, username: str) -> int:
        user_id = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
        if user_id is None:
            raise NotFoundError(f"no user named {username!r}")
        return int(user_id)
