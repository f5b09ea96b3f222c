"""Dead letters: messages that could not be stored, kept for admins instead of redelivered.

An MQTT message that fails validation, or whose records the store refuses, is
acknowledged to the broker (redelivering it would never make it storable and
would stop the topic behind it) and kept here, per site: when, from where,
why, and the message itself (cut at :data:`MAX_PAYLOAD_CHARS`). Each one is
audited. They are purged with the site's positions (retention), and listed to
admins by ``GET /api/v1/dead-letters`` and on the admin page.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete, func, select

from coverwatch.storage.audit import AuditRepository, _prepare_details
from coverwatch.storage.base import now_us
from coverwatch.storage.tables import dead_letters

__all__ = ["MAX_PAYLOAD_CHARS", "DeadLetterRepository"]

#: How much of a dead message is kept (its size and digest are kept whole).
MAX_PAYLOAD_CHARS = 64 * 1024


class DeadLetterRepository(AuditRepository):
    """Keeping, listing and purging dead letters."""

    def add_dead_letter(self, source: str, topic: str | None, payload: bytes,
                        reason: str, *, actor: str = "ingest") -> int:
        """Keep a message that could not be stored, audited; returns its id."""
        text = payload[: MAX_PAYLOAD_CHARS * 4].decode("utf-8", "replace")[:MAX_PAYLOAD_CHARS]
        digest = hashlib.sha256(payload).hexdigest()
        values = {"site": self.site, "received_us": now_us(), "source": source,
                  "topic": topic, "reason": reason[:2000], "payload": text,
                  "payload_bytes": len(payload), "digest": digest}
        details = {"source": source, "topic": topic, "reason": values["reason"],
                   "bytes": len(payload), "sha256": digest}
        with self._audit_write() as conn:
            letter = int(conn.execute(dead_letters.insert().values(**values)
                                      .returning(dead_letters.c.id)).scalar_one())
            self._append_audit_locked(conn, actor, "dead-letter.kept", f"dead-letter:{letter}",
                                      _prepare_details(details))
        return letter

    def dead_letters(self, limit: int = 100, before_id: int | None = None
                     ) -> list[dict[str, Any]]:
        """The newest dead letters of this site, newest first."""
        q = (select(dead_letters).where(dead_letters.c.site == self.site)
             .order_by(dead_letters.c.id.desc()).limit(limit))
        if before_id is not None:
            q = q.where(dead_letters.c.id < before_id)
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def count_dead_letters(self) -> int:
        q = select(func.count()).select_from(dead_letters).where(dead_letters.c.site == self.site)
        with self.reading() as conn:
            return int(conn.execute(q).scalar_one())

    def purge_dead_letters(self, before_us: int, actor: str) -> int:
        """Delete dead letters received before ``before_us`` (retention); audited."""
        q = delete(dead_letters).where(dead_letters.c.site == self.site,
                                       dead_letters.c.received_us < before_us)
        with self._audit_write() as conn:
            removed = int(conn.execute(q).rowcount or 0)
            if removed:
                self._append_audit_locked(conn, actor, "retention.purged", "dead-letters",
                                          _prepare_details({"before_us": before_us,
                                                            "removed": removed}))
        return removed
