"""Incidents: the alerts of one flood grouped as one cause, kept so that a restart shows
the same incident with the same members (each member's acknowledgement is its alert's).

The grouping is the domain's (:mod:`coverwatch.domain.incidents`); this stores each
incident's latest ``Incident.to_record()``, replaced by its id as members join.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import or_, select

from coverwatch.storage.base import StoreBase, dialect_insert, now_us
from coverwatch.storage.tables import incidents

__all__ = ["IncidentRepository"]

_HOLDING_CHUNK = 200  # alert ids per query


class IncidentRepository(StoreBase):
    """Incident records of the store's site (``save_incidents`` / ``load_incidents``)."""

    def save_incidents(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Store each incident's record (inserted or replaced by id), in one transaction."""
        if not records:
            return
        at = now_us()
        with self._write() as conn:
            for record in records:
                values = {"site": self.site, "id": str(record["id"]),
                          "started_us": int(record["started"]), "cause": str(record["cause"]),
                          "record": orjson.dumps(dict(record)).decode(), "updated_us": at}
                insert = dialect_insert(self.dialect)(incidents).values(**values)
                conn.execute(insert.on_conflict_do_update(
                    index_elements=[incidents.c.site, incidents.c.id],
                    set_={k: insert.excluded[k] for k in values if k not in ("site", "id")}))

    def load_incidents(self, since_us: int | None = None) -> list[dict[str, Any]]:
        """Every stored incident record, oldest first; with ``since_us``, those started
        at or after it."""
        q = (select(incidents.c.record).where(incidents.c.site == self.site)
             .order_by(incidents.c.started_us, incidents.c.id))
        if since_us is not None:
            q = q.where(incidents.c.started_us >= since_us)
        with self.reading() as conn:
            return [orjson.loads(r) for r in conn.execute(q).scalars()]

    def incidents_holding(self, alert_ids: Sequence[str], before_us: int
                          ) -> list[dict[str, Any]]:
        """The incidents started before ``before_us`` that have any of these alerts as a
        member, oldest first (a start holds them beside the recent ones)."""
        found: dict[str, dict[str, Any]] = {}
        ids = sorted(set(alert_ids))
        with self.reading() as conn:
            for i in range(0, len(ids), _HOLDING_CHUNK):  # under SQLite's expression depth
                q = select(incidents.c.record).where(
                    incidents.c.site == self.site, incidents.c.started_us < before_us,
                    or_(*(incidents.c.record.contains(orjson.dumps(a).decode())
                          for a in ids[i : i + _HOLDING_CHUNK])))
                for text in conn.execute(q).scalars():
                    record = orjson.loads(text)
                    if set(record.get("members", ())) & set(ids):  # not a mere mention
                        found[str(record["id"])] = record
        return sorted(found.values(), key=lambda r: (r["started"], r["id"]))

    def get_incident_record(self, incident_id: str) -> dict[str, Any] | None:
        """One incident's record, or None."""
        q = select(incidents.c.record).where(incidents.c.site == self.site,
                                             incidents.c.id == incident_id)
        with self.reading() as conn:
            text = conn.execute(q).scalar()
        return None if text is None else dict(orjson.loads(text))
