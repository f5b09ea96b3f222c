"""Contacts, delivery receipts and dispatches.

A user has an ordered list of contacts (Apprise or signed-webhook URLs). The
URLs are secrets: the store hands them to the notifier and to nothing else;
listings go through a redactor the caller supplies (storage cannot import the
notifier). Every notification attempt is kept as a delivery row, audited in the
same transaction, so the alert card, the API and the audit log tell the same story.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from coverwatch.storage.audit import AuditMixin, _prepare_details
from coverwatch.storage.auth import NotFoundError
from coverwatch.storage.base import now_us
from coverwatch.storage.tables import contacts, deliveries, dispatches, site_roles, users

__all__ = ["ContactsMixin", "DeliveryRecord", "Reach"]


@dataclass(frozen=True, slots=True)
class Reach:
    """One person an escalation target resolves to, with their contact URLs."""

    person: str
    urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One notification attempt as stored (``address`` already redacted)."""

    alert_id: str
    level: int
    purpose: str
    target: str
    person: str | None
    address: str | None
    ok: bool
    error: str | None
    attempts: int
    at_us: int

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id, "level": self.level, "purpose": self.purpose,
            "target": self.target, "person": self.person, "address": self.address,
            "outcome": "delivered" if self.ok else "failed", "error": self.error,
            "attempts": self.attempts, "at_us": self.at_us,
        }


def _roles(text: str) -> frozenset[str]:
    return frozenset(r for r in text.split(",") if r)


def _delivery(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        row.alert_id, int(row.level), row.purpose, row.target, row.person, row.address,
        row.outcome == "delivered", row.error, int(row.attempts), int(row.at_us),
    )


class ContactsMixin(AuditMixin):
    """Contacts per user, target resolution, deliveries and dispatches."""

    # -- contacts -----------------------------------------------------------

    def contacts_of(self, username: str) -> list[str]:
        """A user's contact URLs, in order (secrets: do not log or list them)."""
        with self._read() as conn:
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
        with self._read() as conn:
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
        with self._read() as conn:
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

    # -- deliveries ---------------------------------------------------------

    def record_deliveries(self, records: Sequence[DeliveryRecord]) -> None:
        """Store notification attempts and audit each, in one transaction.

        Audit action ``notification.delivered`` / ``notification.failed``,
        subject ``alert:<id>``; addresses are stored redacted by the caller.
        """
        if not records:
            return
        with self._audit_write() as conn:
            for d in records:
                conn.execute(deliveries.insert().values(
                    site=self.site, alert_id=d.alert_id, level=d.level, purpose=d.purpose,
                    target=d.target,
                    person=d.person, address=d.address,
                    outcome="delivered" if d.ok else "failed", error=d.error,
                    attempts=d.attempts, at_us=d.at_us,
                ))
                details = {k: v for k, v in d.to_json().items() if k != "alert_id"}
                self._append_audit_locked(
                    conn, "notifier", f"notification.{'delivered' if d.ok else 'failed'}",
                    f"alert:{d.alert_id}", _prepare_details(details),
                )

    def load_deliveries(self, alert_ids: Sequence[str] | None = None) -> list[DeliveryRecord]:
        """Deliveries (all, or of some alerts), oldest first."""
        q = select(deliveries).where(deliveries.c.site == self.site).order_by(deliveries.c.id)
        if alert_ids is not None:
            q = q.where(deliveries.c.alert_id.in_(list(alert_ids)))
        with self._read() as conn:
            return [_delivery(r) for r in conn.execute(q)]

    # -- dispatches ---------------------------------------------------------

    def record_dispatch(
        self, alert_id: str, officer: str, post: str, message: str, by_user: str,
        at_us: int,
    ) -> dict[str, Any]:
        """Store a dispatch and audit it (``alert.dispatched``) in one transaction."""
        values = {"alert_id": alert_id, "officer": officer, "post": post, "message": message,
                  "by_user": by_user, "at_us": at_us}
        with self._audit_write() as conn:
            new_id = conn.execute(dispatches.insert().values(site=self.site, **values)
                                  .returning(dispatches.c.id)).scalar_one()
            self._append_audit_locked(conn, by_user, "alert.dispatched", f"alert:{alert_id}",
                                      _prepare_details({k: v for k, v in values.items()
                                                        if k != "alert_id"}))
        return {"id": int(new_id), **values}

    def dispatches_for_officer(self, officer: str, since_us: int = 0) -> list[dict[str, Any]]:
        """Dispatches sent to an officer since ``since_us``, newest first."""
        q = (select(dispatches).where(dispatches.c.site == self.site,
                                      dispatches.c.officer == officer,
                                      dispatches.c.at_us >= since_us)
             .order_by(dispatches.c.at_us.desc(), dispatches.c.id.desc()).limit(50))
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def load_dispatches(self) -> list[dict[str, Any]]:
        """Every dispatch, oldest first (the server keeps them in memory)."""
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(dispatches).order_by(dispatches.c.id))]

    def dispatches_for(self, alert_id: str) -> list[dict[str, Any]]:
        """Dispatches made for one alert, oldest first."""
        q = (select(dispatches).where(dispatches.c.site == self.site,
                                      dispatches.c.alert_id == alert_id)
             .order_by(dispatches.c.id))
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
