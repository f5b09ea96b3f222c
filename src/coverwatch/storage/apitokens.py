"""API tokens: the credentials of systems (a dispatch desk, an ingest bridge), never of people."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from coverwatch.domain.roles import TOKEN_ROLES
from coverwatch.storage.auth import (
    NotFoundError,
    hash_token,
    insert_unique,
    new_token,
    normalise_roles,
    roles_from_text,
    roles_text,
)
from coverwatch.storage.base import StoreBase
from coverwatch.storage.base import now_us as wall_clock_us
from coverwatch.storage.tables import api_tokens

__all__ = ["ApiToken", "ApiTokenRepository"]


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    name: str
    roles: frozenset[str]
    active: bool
    created_us: int


def _api_token(row: Any) -> ApiToken:
    return ApiToken(row.id, row.name, roles_from_text(row.roles), bool(row.active), row.created_us)


class ApiTokenRepository(StoreBase):
    """Service tokens: created, looked up by token, revoked, listed."""

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
                roles=roles_text(role_set),
                active=True,
                created_us=wall_clock_us() if created_us is None else created_us,
            )
            .returning(*api_tokens.c)
        )
        with self._write() as conn:
            row = insert_unique(conn, stmt, "API token", name).one()
        return _api_token(row), token

    def api_token_for(self, token: str) -> ApiToken | None:
        """The active API token matching ``token``, or None."""
        with self.reading() as conn:
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
        with self.reading() as conn:
            q = select(api_tokens).order_by(api_tokens.c.name)
            return [_api_token(r) for r in conn.execute(q)]
