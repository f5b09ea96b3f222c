"""What is kept and for how long: report checkpoints, legal holds and the purge of old positions.

Report checkpoints are derived state (the engine at an instant, see
``reports/checkpoints.py``); any stored event earlier than a checkpoint drops it
(in :meth:`Store.append_events`), so a checkpoint always agrees with a full
recompute. Raw positions (``fix`` events) older than the site's retention are
purged daily, except inside a legal hold; duty, gate and flag events, alerts,
acknowledgements and the audit log are kept. Every purge and hold is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, case, delete, exists, func, not_, select, text, update

from coverwatch.errors import StoreError
from coverwatch.storage.audit import AuditRepository, _prepare_details
from coverwatch.storage.base import now_us
from coverwatch.storage.tables import engine_checkpoints, events, legal_holds, purges

__all__ = ["Checkpoint", "KeepingRepository", "LegalHold"]

_ENGINE_COLUMNS = ("id", "kind", "t_us", "officer", "x", "y", "accuracy", "post", "flag", "on",
                   "open", "capabilities", "late")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A saved engine state at ``at_us`` (see the module docstring)."""

    at_us: int
    version_us: int
    version_sha: str
    max_event_id: int
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LegalHold:
    id: int
    since_us: int
    until_us: int
    reason: str
    created_by: str
    created_us: int
    released_by: str | None
    released_us: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "since_us": self.since_us, "until_us": self.until_us,
                "reason": self.reason, "created_by": self.created_by,
                "created_us": self.created_us, "released_by": self.released_by,
                "released_us": self.released_us}


class KeepingRepository(AuditRepository):
    """Checkpoint, hold and purge methods of the store."""

    # -- report checkpoints ------------------------------------------------

    def save_checkpoint(self, cp: Checkpoint) -> bool:
        """Save a checkpoint unless an event earlier than it arrived since it was computed."""
        # Events stored since (by id: a short range of the primary key, whatever the history).
        newer = select(events.c.site, events.c.t_us).where(events.c.id > cp.max_event_id)
        ec = engine_checkpoints
        with self._write() as conn:
            if any(r.site == self.site and r.t_us < cp.at_us for r in conn.execute(newer)):
                return False
            conn.execute(ec.delete().where(ec.c.site == self.site, ec.c.at_us == cp.at_us))
            conn.execute(ec.insert().values(
                site=self.site, at_us=cp.at_us, version_us=cp.version_us,
                version_sha=cp.version_sha,
                max_event_id=cp.max_event_id, state=orjson.dumps(cp.state).decode(),
                created_us=now_us(),
            ))
        return True

    def checkpoint_at_or_before(self, t_us: int) -> Checkpoint | None:
        """The newest checkpoint with ``at_us <= t_us``."""
        q = (select(engine_checkpoints).where(engine_checkpoints.c.site == self.site,
                                              engine_checkpoints.c.at_us <= t_us)
             .order_by(engine_checkpoints.c.at_us.desc()).limit(1))
        with self.reading() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        return Checkpoint(int(row.at_us), int(row.version_us), str(row.version_sha),
                          int(row.max_event_id), orjson.loads(row.state))

    def checkpoint_times(self) -> list[int]:
        with self.reading() as conn:
            q = (select(engine_checkpoints.c.at_us)
                 .where(engine_checkpoints.c.site == self.site)
                 .order_by(engine_checkpoints.c.at_us))
            return [int(t) for t in conn.execute(q).scalars()]

    def drop_checkpoints(self, after_us: int | None = None) -> None:
        q = engine_checkpoints.delete().where(engine_checkpoints.c.site == self.site)
        if after_us is not None:
            q = q.where(engine_checkpoints.c.at_us > after_us)
        with self._write() as conn:
            conn.execute(q)

    def first_event_us(self, before_us: int) -> int | None:
        """The earliest stored event time before ``before_us`` (None: no such event)."""
        with self.reading() as conn:
            found = conn.execute(select(func.min(events.c.t_us)).where(
                events.c.site == self.site, events.c.t_us < before_us)).scalar()
        return None if found is None else int(found)

    def next_event_us(self, at_or_after_us: int, before_us: int) -> int | None:
        """The earliest stored event time in ``[at_or_after_us, before_us)`` (None: none):
        lets a report step over years without events in one query."""
        with self.reading() as conn:
            found = conn.execute(select(func.min(events.c.t_us)).where(
                events.c.site == self.site, events.c.t_us >= at_or_after_us,
                events.c.t_us < before_us)).scalar()
        return None if found is None else int(found)

    def fix_keys(self, officers: Sequence[str], t0_us: int, t1_us: int) -> list[str]:
        """The idempotence keys of the stored fixes of ``officers`` with ``t0 <= t < t1``
        (an import recognises what a device already sent)."""
        q = select(events.c.key).where(
            events.c.site == self.site, events.c.kind == "fix",
            events.c.officer.in_(list(officers)), events.c.t_us >= t0_us,
            events.c.t_us < t1_us)
        with self.reading() as conn:
            return [str(k) for k in conn.execute(q).scalars()]

    def engine_rows(self, t0_us: int, t1_us: int) -> list[dict[str, Any]]:
        """Events with ``t0_us <= t_us < t1_us`` by (t_us, id), only the columns the engine
        reads (a report's hot path: much cheaper than full rows)."""
        cols = [events.c[n] for n in _ENGINE_COLUMNS]
        # The raw record of a fix stored from a checkpoint scan (its accuracy grows
        # with time: server/live.py), and of no other row: raw is not read otherwise.
        scan_raw = case((and_(events.c.kind == "fix", events.c.raw.like('%"kind":"scan"%')),
                         events.c.raw), else_=None)
        q = (select(*cols, scan_raw).where(events.c.site == self.site, events.c.t_us >= t0_us,
                                 events.c.t_us < t1_us)
             .order_by(events.c.t_us, events.c.id))
        with self.reading() as conn:
            return [dict(zip((*_ENGINE_COLUMNS, "scan_raw"), r, strict=True))
                    for r in conn.execute(q)]

    # -- legal holds and the purge -------------------------------------------

    def add_hold(self, since_us: int, until_us: int, reason: str, actor: str) -> LegalHold:
        """Protect raw events in [since, until) from the purge (audited)."""
        if until_us <= since_us:
            raise StoreError("a legal hold must end after it starts")
        if len(reason.strip()) < 5:
            raise StoreError("a legal hold needs a reason (at least 5 characters)")
        created = now_us()
        details = {"since_us": since_us, "until_us": until_us, "reason": reason.strip()}
        with self._audit_write() as conn:
            hold_id = conn.execute(legal_holds.insert().values(
                site=self.site, since_us=since_us, until_us=until_us, reason=reason.strip(),
                created_by=actor,
                created_us=created,
            ).returning(legal_holds.c.id)).scalar_one()
            self._append_audit_locked(conn, actor, "hold.placed", f"hold:{hold_id}",
                                      _prepare_details(details))
        return LegalHold(int(hold_id), since_us, until_us, reason.strip(), actor, created,
                         None, None)

    def release_hold(self, hold_id: int, actor: str) -> None:
        with self._audit_write() as conn:
            done = conn.execute(update(legal_holds).where(
                legal_holds.c.site == self.site, legal_holds.c.id == hold_id,
                legal_holds.c.released_us.is_(None),
            ).values(released_by=actor, released_us=now_us())).rowcount
            if not done:
                raise StoreError(f"no standing legal hold {hold_id}")
            self._append_audit_locked(conn, actor, "hold.released", f"hold:{hold_id}",
                                      _prepare_details({}))

    def holds(self, *, standing_only: bool = False) -> list[LegalHold]:
        q = select(legal_holds).where(legal_holds.c.site == self.site).order_by(legal_holds.c.id)
        if standing_only:
            q = q.where(legal_holds.c.released_us.is_(None))
        with self.reading() as conn:
            return [LegalHold(int(r.id), int(r.since_us), int(r.until_us), r.reason,
                              r.created_by, int(r.created_us), r.released_by,
                              None if r.released_us is None else int(r.released_us))
                    for r in conn.execute(q)]

    def purge_positions(self, before_us: int, actor: str, *, retention_days: float) -> int:
        """Delete fixes with ``t_us < before_us`` outside every standing hold; audited."""
        held = exists().where(
            legal_holds.c.site == self.site, legal_holds.c.released_us.is_(None),
            legal_holds.c.since_us <= events.c.t_us, legal_holds.c.until_us > events.c.t_us,
        )
        q = delete(events).where(and_(events.c.site == self.site, events.c.kind == "fix",
                                      events.c.t_us < before_us,
                                      not_(held)))
        rule = f"retention.positions_days={retention_days!r}"
        with self._audit_write() as conn:
            if conn.dialect.name == "postgresql":
                # The only way to delete positions there (migration 0014): the definer
                # function deletes and writes the purge record in this transaction.
                removed = int(conn.execute(
                    text("SELECT coverwatch_purge_positions(:s, :b, :a, :r, :n)"),
                    {"s": self.site, "b": before_us, "a": actor, "r": rule,
                     "n": now_us()}).scalar() or 0)
            else:
                removed = int(conn.execute(q).rowcount or 0)
                conn.execute(purges.insert().values(
                    site=self.site, at_us=now_us(), what="events:fix", before_us=before_us,
                    removed=removed, rule=rule, actor=actor))
            self._append_audit_locked(conn, actor, "retention.purged", "events:fix",
                                      _prepare_details({"before_us": before_us,
                                                        "retention_days": retention_days,
                                                        "removed": removed}))
        return removed
