"""Contacts: where each person is reached, and who an escalation target resolves to.

A user has an ordered list of contacts (Apprise or signed-webhook URLs). The
URLs are secrets: the store hands them to the notifier and to nothing else;
listings go through a redactor the caller supplies (storage cannot import the
notifier). What was sent to them is :mod:`coverwatch.storage.deliveries`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from coverwatch.storage.audit import AuditRepository
from coverwatch.storage.auth import NotFoundError
from coverwatch.storage.base import now_us
from coverwatch.storage.tables import contacts, site_roles, users

__all__ = ["ContactRepository", "Reach"]


@dataclass(frozen=True, slots=True)
class Reach:
    """One person an escalation target resolves to, with their contact URLs."""

    person: str
    urls: tuple[str, ...]


def _roles(text: str) -> frozenset[str]:
    return frozenset(r for r in text.split(",") if r)


class ContactRepository(AuditRepository):
    """Contacts per user and the resolution of escalation targets to people."""

    # -- contacts -----------------------------------------------------------

    def contacts_of(self, username: str) -> list[str]:
        """A user's contact URLs, in order (secrets: do not log or list them)."""
        with self.reading() as conn:
            user_id = self._contact_user(conn, username)
            q = (select(contacts.c.url).where(contacts.c.user_id == user_id)
                 .order_by(contacts.c.position))
            return [str(u) for u in conn.execute(q).scalars()]

    def contacts_by_user(self) -> dict[str, list[str]]:
        """Every user's contact URLs (users without any are absent)."""
        q = (select(users.c.username, contacts.c.url)
             .join(contacts, contacts.c.user_id == users.c.id)
             .order_by(users.c.username, contacts.c.position))
        out: dict[str, list[str]] = {}
        with self.reading() as conn:
            for row in conn.execute(q):
                out.setdefault(row.username, []).append(row.url)
        return out

    def set_contacts(self, username: str, urls: Sequence[str]) -> list[str]:
        """Replace a user's contacts (validate the URLs first: the store does not)."""
        clean = list(dict.fromkeys(u.strip() for u in urls if u.strip()))
        now = now_us()
        with self._write() as conn:
            user_id = self._contact_user(conn, username)
            conn.execute(delete(contacts).where(contacts.c.user_id == user_id))
            if clean:
                conn.execute(contacts.insert(), [
                    {"user_id": user_id, "position": i, "url": u, "created_us": now}
                    for i, u in enumerate(clean)
                ])
        return clean

    def add_contact(self, username: str, url: str) -> list[str]:
        """Add one contact at the end of a user's list (no repeats); returns the list."""
        current = self.contacts_of(username)
        return self.set_contacts(username, [*current, url])

    def reach(self, target: str) -> list[Reach]:
        """The active people an escalation target names, each with their contacts.

        ``role:<role>``: every active user holding the role deployment-wide or at
        this store's site; ``user:<name>``: that user, if active. People without
        contacts are included (with no URLs), so a caller can say who could not be
        reached. Sorted by username.
        """
        kind, _, name = target.partition(":")
        if not name or kind not in ("role", "user"):
            return []
        q = select(users.c.id, users.c.username, users.c.roles).where(users.c.active.is_(True))
        if kind == "user":
            q = q.where(users.c.username == name)
        with self.reading() as conn:
            # A supervisor of this site only is reached like a deployment-wide one.
            here = {int(r.user_id) for r in conn.execute(
                select(site_roles.c.user_id, site_roles.c.roles)
                .where(site_roles.c.site == self.site)) if name in _roles(r.roles)}
            people = [r for r in conn.execute(q.order_by(users.c.username))
                      if kind == "user" or name in _roles(r.roles) or int(r.id) in here]
            ids = [r.id for r in people]
            by_id: dict[int, list[str]] = {}
            if ids:
                cq = (select(contacts.c.user_id, contacts.c.url)
                      .where(contacts.c.user_id.in_(ids)).order_by(contacts.c.position))
                for row in conn.execute(cq):
                    by_id.setdefault(int(row.user_id), []).append(row.url)
        return [Reach(p.username, tuple(by_id.get(int(p.id), ()))) for p in people]

    def notification_urls(self, target: str) -> list[str]:
        """The contact URLs a target resolves to, without repeats (the notifier's resolver)."""
        urls: list[str] = []
        for person in self.reach(target):
            urls.extend(u for u in person.urls if u not in urls)
        return urls

    @staticmethod
    def _contact_user(conn: Any, username: str) -> int:
        user_id = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
        if user_id is None:
            raise NotFoundError(f"no user named {username!r}")
        return int(user_id)
