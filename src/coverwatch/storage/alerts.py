"""Alert records: each alert's latest ``Alert.to_record()``, saved with the audit
entry of the change.

Alerts are persisted, not managed: their lifecycle is the domain's
(:mod:`coverwatch.domain.alerts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, select

from coverwatch.domain.alerts import Alert, AlertLifecycleError, AlertState, alert_id_for
from coverwatch.errors import StoreError
from coverwatch.storage.audit import AuditEntry, AuditRepository, _prepare_details
from coverwatch.storage.base import dialect_insert, now_us
from coverwatch.storage.tables import alerts
from coverwatch.storage.tlog import append_record_leaf, record_digest

__all__ = ["AlertRepository", "InvalidAlertRecordError"]


# What a start holds whatever its age: every state but closed.
_NOT_CLOSED = tuple(s.value for s in AlertState if s is not AlertState.CLOSED)


class InvalidAlertRecordError(StoreError, ValueError):
    """An alert record that ``Alert.from_record`` refuses, or whose id is not its key's."""


def _alert_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """The alerts row for a domain alert record (checked by ``Alert.from_record``)."""
    try:
        alert = Alert.from_record(record)
    except AlertLifecycleError as exc:
        raise InvalidAlertRecordError(str(exc)) from None
    expected = alert_id_for(alert.kind, alert.post, alert.rule, alert.lapse_start)
    if alert.id != expected:
        raise InvalidAlertRecordError(
            f"alert record id {alert.id!r} is not the id of its key ({expected!r})"
        )
    return {
        "id": alert.id,
        "kind": alert.kind,
        "post": alert.post,
        "rule": alert.rule,
        "lapse_start_us": alert.lapse_start,
        "alert_at_us": alert.alert_at,
        "state": alert.state.value,
    }



class AlertRepository(AuditRepository):
    """Alert records of the store's site, each change audited in the same transaction."""

    def _insert_alert_locked(self, conn: Connection, record: Mapping[str, Any],
                             action: str) -> bool:
        """Insert a new alert and audit it (inside :meth:`_audit_write`); False if it exists."""
        values = _alert_values(record)
        details_text, body = _prepare_details(record)
        values |= {"site": self.site, "record": details_text, "updated_us": now_us()}
        insert = dialect_insert(self.dialect)(alerts).values(**values)
        got = conn.execute(insert.on_conflict_do_nothing().returning(alerts.c.id)).scalar()
        if got is None:
            return False
        self._append_audit_locked(conn, "device", action, f"alert:{values['id']}",
                                  (details_text, body))
        append_record_leaf(conn, self.site, "alert", values["id"], body)  # transparency log
        return True

    def record_alert_event(
        self, record: Mapping[str, Any], *, actor: str, action: str
    ) -> AuditEntry:
        """Save an alert's latest record and audit the change, in one transaction.

        ``record`` is ``coverwatch.domain.alerts.Alert.to_record()``; the row is
        inserted or replaced by its id, so saving the same record twice leaves
        one alert. The audit entry (``actor``, ``action``, subject
        ``alert:<id>``, details = the record) is chained like any other.
        """
        values = _alert_values(record)
        details_text, body = _prepare_details(record)
        values |= {"site": self.site, "record": details_text, "updated_us": now_us()}
        insert = dialect_insert(self.dialect)(alerts).values(**values)
        upsert = insert.on_conflict_do_update(
            index_elements=[alerts.c.site, alerts.c.id],
            set_={k: insert.excluded[k] for k in values if k not in ("site", "id")},
        )
        with self._audit_write() as conn:
            conn.execute(upsert)
            entry = self._append_audit_locked(
                conn, actor, action, f"alert:{values['id']}", (details_text, body)
            )
            # Each transition is a leaf of its own: the record as saved, by its digest.
            append_record_leaf(conn, self.site, "alert", values["id"], body)
            return entry

    def record_alert_events(
        self, changes: Sequence[tuple[Mapping[str, Any], str]], *, actor: str
    ) -> list[AuditEntry]:
        """:meth:`record_alert_event` of many ``(record, action)`` in order, in one
        transaction and with a fixed number of statements (thousands of officers
        unbriefed at once): each change audited and a leaf of its own, as one by one."""
        if not changes:
            return []
        now = now_us()
        latest: dict[str, dict[str, Any]] = {}  # an alert changed twice: its last record
        entries: list[tuple[str, str, str, tuple[str, dict[str, Any]]]] = []
        leaves: list[list[tuple[str, str, Mapping[str, Any]]]] = []
        for record, action in changes:
            values = _alert_values(record)
            details_text, body = _prepare_details(record)
            latest.pop(values["id"], None)
            latest[values["id"]] = values | {"site": self.site, "record": details_text,
                                             "updated_us": now}
            entries.append((actor, action, f"alert:{values['id']}", (details_text, body)))
            leaves.append([("alert", values["id"], {"hash": record_digest(body)})])
        insert = dialect_insert(self.dialect)(alerts)
        upsert = insert.on_conflict_do_update(
            index_elements=[alerts.c.site, alerts.c.id],
            set_={k: insert.excluded[k] for k in next(iter(latest.values()))
                  if k not in ("site", "id")},
        )
        with self._audit_write() as conn:
            conn.execute(upsert, list(latest.values()))
            return self._append_audits_locked(conn, entries, leaves)

    def load_alerts(self) -> list[dict[str, Any]]:
        """Every stored alert record, ordered by alert time then id (for ``AlertBook``)."""
        q = (select(alerts.c.record).where(alerts.c.site == self.site)
             .order_by(alerts.c.alert_at_us, alerts.c.id))
        with self.reading() as conn:
            return [orjson.loads(r) for r in conn.execute(q).scalars()]

    def load_held_alerts(self, newest: int) -> tuple[list[dict[str, Any]], int | None]:
        """What a live server holds at its start: every alert not closed and the ``newest``
        last raised (the control room's history shows 200), ordered by alert time then id;
        and the time from which every stored alert is among them (None: all are).

        Two queries, each on its index, so the start reads no closed history."""
        recent = (select(alerts.c.record).where(alerts.c.site == self.site)
                  .order_by(alerts.c.alert_at_us.desc(), alerts.c.id.desc()).limit(newest))
        live = select(alerts.c.record).where(alerts.c.site == self.site,
                                             alerts.c.state.in_(_NOT_CLOSED))
        with self.reading() as conn:
            last = [orjson.loads(r) for r in conn.execute(recent).scalars()]
            not_closed = [orjson.loads(r) for r in conn.execute(live).scalars()]
        held = {r["id"]: r for r in (*not_closed, *last)}
        # Alerts raised at the oldest one's time may be cut off by the limit: from after it.
        since = None if len(last) < newest else int(last[-1]["alert_at"]) + 1
        return sorted(held.values(), key=lambda r: (r["alert_at"], r["id"])), since

    def load_unclosed_alerts(self) -> list[dict[str, Any]]:
        """Every alert not closed, by alert time then id (one query on its index): what a
        tree head's ``open_alerts`` is taken from, without reading the closed history."""
        q = (select(alerts.c.record).where(alerts.c.site == self.site,
                                           alerts.c.state.in_(_NOT_CLOSED))
             .order_by(alerts.c.alert_at_us, alerts.c.id))
        with self.reading() as conn:
            return [orjson.loads(r) for r in conn.execute(q).scalars()]

    def get_alert_record(self, alert_id: str) -> dict[str, Any] | None:
        """One alert's latest record, or None."""
        q = select(alerts.c.record).where(alerts.c.site == self.site, alerts.c.id == alert_id)
        with self.reading() as conn:
            text = conn.execute(q).scalar()
        return None if text is None else dict(orjson.loads(text))
