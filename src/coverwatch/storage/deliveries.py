"""Delivery receipts and dispatches: what was sent about an alert, to whom, and how it went.

Every notification attempt is kept as a delivery row, audited in the same
transaction, so the alert card, the API and the audit log tell the same story.
A dispatch (a supervisor sending an officer to a post) is kept and audited the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from coverwatch.storage.audit import AuditRepository, _prepare_details
from coverwatch.storage.tables import deliveries, dispatches
from coverwatch.storage.tlog import append_record_leaf

__all__ = ["DeliveryRecord", "DeliveryRepository"]


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


def _delivery(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        row.alert_id, int(row.level), row.purpose, row.target, row.person, row.address,
        row.outcome == "delivered", row.error, int(row.attempts), int(row.at_us),
    )


class DeliveryRepository(AuditRepository):
    """Notification attempts and dispatches of the store's site, each audited."""

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
                # The delivery's leaf: ref the alert, digest of to_json() (as packs carry it).
                append_record_leaf(conn, self.site, "delivery", d.alert_id, d.to_json())

    def load_deliveries(self, alert_ids: Sequence[str] | None = None) -> list[DeliveryRecord]:
        """Deliveries (all, or of some alerts), oldest first."""
        q = select(deliveries).where(deliveries.c.site == self.site).order_by(deliveries.c.id)
        if alert_ids is not None:
            q = q.where(deliveries.c.alert_id.in_(list(alert_ids)))
        with self.reading() as conn:
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
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def load_dispatches(self) -> list[dict[str, Any]]:
        """Every dispatch of the site, oldest first (the server keeps them in memory)."""
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(dispatches).where(dispatches.c.site == self.site)
                .order_by(dispatches.c.id))]

    def dispatches_for(self, alert_id: str) -> list[dict[str, Any]]:
        """Dispatches made for one alert, oldest first."""
        q = (select(dispatches).where(dispatches.c.site == self.site,
                                      dispatches.c.alert_id == alert_id)
             .order_by(dispatches.c.id))
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
