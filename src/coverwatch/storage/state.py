"""Server state: small named values the server keeps between runs (the site
versions, the live horizon, the daily report's progress), per site."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, select

from coverwatch.storage.base import StoreBase, dialect_insert, now_us
from coverwatch.storage.tables import server_state

__all__ = ["StateRepository"]


class StateRepository(StoreBase):
    """Named values of the store's site (``get_state`` / ``set_state``)."""

    def get_state(self, key: str) -> str | None:
        """A value saved with :meth:`set_state`, or None."""
        q = select(server_state.c.value).where(
            server_state.c.site == self.site, server_state.c.key == key)
        with self.reading() as conn:
            value = conn.execute(q).scalar()
        return None if value is None else str(value)

    def set_state(self, key: str, value: str) -> None:
        """Save ``value`` under ``key`` (replacing any), durably, in one transaction."""
        with self._write() as conn:
            self._set_state_in(conn, key, value)

    def set_states_of_sites(self, values: Mapping[tuple[str, str], str]) -> None:
        """Save several sites' values (``(site, key) -> value``) in one transaction: one
        commit for what would be one per site (server/statesaver.py)."""
        with self._write() as conn:
            for (site, key), value in values.items():
                self._set_state_in(conn, key, value, site)

    def _set_state_in(self, conn: Connection, key: str, value: str,
                      site: str | None = None) -> None:
        """:meth:`set_state` inside the caller's transaction (of ``site``: this store's)."""
        insert = dialect_insert(self.dialect)(server_state).values(
            site=self.site if site is None else site, key=key, value=value,
            updated_us=now_us()
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[server_state.c.site, server_state.c.key],
            set_={"value": insert.excluded.value, "updated_us": insert.excluded.updated_us},
        )
        conn.execute(upsert)
