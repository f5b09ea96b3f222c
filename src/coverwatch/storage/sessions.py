"""Browser sessions: a cookie token (stored hashed) and its CSRF token, per logged-in user."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import delete, select

from coverwatch.storage.auth import hash_token, new_token
from coverwatch.storage.base import StoreBase
from coverwatch.storage.tables import sessions, users
from coverwatch.storage.users import User, user_from_row

__all__ = ["NewSession", "SessionInfo", "SessionRepository"]


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



class SessionRepository(StoreBase):
    """Sessions: started at login, looked up per request, ended at logout or expiry."""

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
        with self.reading() as conn:
            row = conn.execute(q).first()
        if row is None or row.expires_us <= now_us or not row.active:
            return None
        return SessionInfo(user_from_row(row), row.csrf_token, row.session_created_us,
                           row.expires_us)

    def delete_session(self, token: str) -> bool:
        """End a session (logout); True if it existed."""
        with self._write() as conn:
            done = conn.execute(delete(sessions).where(sessions.c.id == hash_token(token)))
        return bool(done.rowcount)

    def delete_expired_sessions(self, *, now_us: int) -> int:
        with self._write() as conn:
            done = conn.execute(delete(sessions).where(sessions.c.expires_us <= now_us))
        return int(done.rowcount)
