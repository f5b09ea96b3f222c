"""Store methods for rosters, qualifications, orders versions and acknowledgements.

Every change is written in the same transaction as its audit entry, so the
audit log holds who rostered whom, who changed a qualification, and who
acknowledged which orders version, when and through what.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, case, delete, false, func, or_, select, true

from coverwatch.domain.briefing import Qualification, Shift
from coverwatch.storage.audit import AuditRepository, _prepare_details
from coverwatch.storage.auth import NotFoundError
from coverwatch.storage.base import now_us
from coverwatch.storage.tables import (
    events,
    orders_acknowledgements,
    orders_versions,
    qualifications,
    roster_shifts,
)

__all__ = ["Acknowledgement", "BriefingRepository", "OrdersVersion"]

# The duty events the live engine took, and when: on time at their own time, a late
# one applied live at the horizon it arrived at (docs/semantics.md, "Late state events").
_TAKEN_LIVE = or_(events.c.late == false(), events.c.applied_us.is_not(None))
_LIVE_T = func.coalesce(events.c.applied_us, events.c.t_us)
# Officers named in one IN list (well under SQLite's 32 766 bound parameters).
_IN_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """One acknowledgement of a post's orders version."""

    id: int
    officer: str
    post: str
    version: str
    at: int
    via: str
    device: str | None
    user: str | None


@dataclass(frozen=True, slots=True)
class OrdersVersion:
    """A version of a post's orders as issued: its text and what changed (None: unknown)."""

    post: str
    version: str
    since: int
    text: str
    changes: tuple[str, ...] | None


def _shift(row: Any) -> Shift:
    return Shift(int(row.id), row.officer, int(row.start_us), int(row.end_us), row.post,
                 row.patrol)


def _qualification(row: Any) -> Qualification:
    return Qualification(row.officer, row.name, int(row.valid_until_us),
                         None if row.valid_from_us is None else int(row.valid_from_us))


def _ack(row: Any) -> Acknowledgement:
    return Acknowledgement(int(row.id), row.officer, row.post, row.version, int(row.at_us),
                           row.via, row.device, row.user)


class BriefingRepository(AuditRepository):
    """Rosters, qualifications, orders versions and acknowledgements."""

    # -- rosters ---------------------------------------------------------------

    def add_shifts(self, shifts: Sequence[Shift], *, actor: str) -> list[Shift]:
        """Store shifts (their ``id`` is ignored) in one transaction; returns them with ids."""
        out: list[Shift] = []
        with self._audit_write() as conn:
            for s in shifts:
                new_id = conn.execute(roster_shifts.insert().values(
                    site=self.site, officer=s.officer, post=s.post, patrol=s.patrol,
                    start_us=s.start,
                    end_us=s.end, created_by=actor, created_us=now_us(),
                ).returning(roster_shifts.c.id)).scalar_one()
                out.append(Shift(int(new_id), s.officer, s.start, s.end, s.post, s.patrol))
            self._append_audit_locked(conn, actor, "roster.added", "roster", _prepare_details(
                {"shifts": [_shift_dict(s) for s in out]}))
        return out

    def list_shifts(self, *, from_us: int | None = None,
                    until_us: int | None = None) -> list[Shift]:
        """Shifts overlapping ``[from_us, until_us)`` (all if not given), by start."""
        q = (select(roster_shifts).where(roster_shifts.c.site == self.site)
             .order_by(roster_shifts.c.start_us, roster_shifts.c.id))
        if from_us is not None:
            q = q.where(roster_shifts.c.end_us > from_us)
        if until_us is not None:
            q = q.where(roster_shifts.c.start_us < until_us)
        with self.reading() as conn:
            return [_shift(r) for r in conn.execute(q)]

    def delete_shift(self, shift_id: int, *, actor: str) -> Shift:
        """Remove a shift; :class:`NotFoundError` if there is none."""
        with self._audit_write() as conn:
            row = conn.execute(
                select(roster_shifts).where(roster_shifts.c.site == self.site,
                                            roster_shifts.c.id == shift_id)).first()
            if row is None:
                raise NotFoundError(f"no shift {shift_id}")
            conn.execute(delete(roster_shifts).where(roster_shifts.c.id == shift_id))
            shift = _shift(row)
            self._append_audit_locked(conn, actor, "roster.removed", f"shift:{shift_id}",
                                      _prepare_details(_shift_dict(shift)))
        return shift

    # -- qualifications ------------------------------------------------------------

    def set_qualifications(self, records: Sequence[Qualification], *, actor: str) -> None:
        """Add or replace (by officer and name) this site's qualification records, audited."""
        with self._audit_write() as conn:
            for q in records:
                conn.execute(delete(qualifications).where(
                    qualifications.c.site == self.site, qualifications.c.officer == q.officer,
                    qualifications.c.name == q.name))
                conn.execute(qualifications.insert().values(
                    site=self.site, officer=q.officer, name=q.name, valid_from_us=q.valid_from,
                    valid_until_us=q.valid_until, updated_by=actor, updated_us=now_us(),
                ))
            self._append_audit_locked(conn, actor, "qualifications.set", "qualifications",
                                      _prepare_details({"records": [
                                          _qualification_dict(q) for q in records]}))

    def list_qualifications(self, officer: str | None = None) -> list[Qualification]:
        """This site's qualification records (an officer's at another site do not count)."""
        q = (select(qualifications).where(qualifications.c.site == self.site)
             .order_by(qualifications.c.officer, qualifications.c.name))
        if officer is not None:
            q = q.where(qualifications.c.officer == officer)
        with self.reading() as conn:
            return [_qualification(r) for r in conn.execute(q)]

    # -- orders versions -------------------------------------------------------------

    def record_orders_versions(self, versions: Sequence[OrdersVersion], *, actor: str) -> None:
        """Record newly issued orders versions, audited. A version issued again (orders
        changed back) takes its new ``since`` and ``changes``."""
        if not versions:
            return
        with self._audit_write() as conn:
            for v in versions:
                conn.execute(delete(orders_versions).where(
                    orders_versions.c.site == self.site, orders_versions.c.post == v.post,
                    orders_versions.c.version == v.version))
                conn.execute(orders_versions.insert().values(
                    site=self.site, post=v.post, version=v.version, since_us=v.since, text=v.text,
                    changes=None if v.changes is None else orjson.dumps(list(v.changes)).decode(),
                ))
            self._append_audit_locked(conn, actor, "orders.issued", "orders",
                                      _prepare_details({"versions": [
                                          {"post": v.post, "version": v.version,
                                           "since_us": v.since,
                                           "changes": None if v.changes is None
                                           else list(v.changes)} for v in versions]}))

    def orders_versions(self, post: str | None = None) -> list[OrdersVersion]:
        """Issued versions, oldest first (per post)."""
        q = (select(orders_versions).where(orders_versions.c.site == self.site)
             .order_by(orders_versions.c.post, orders_versions.c.since_us))
        if post is not None:
            q = q.where(orders_versions.c.post == post)
        with self.reading() as conn:
            return [OrdersVersion(r.post, r.version, int(r.since_us), r.text,
                                  None if r.changes is None else tuple(orjson.loads(r.changes)))
                    for r in conn.execute(q)]

    # -- acknowledgements --------------------------------------------------------------

    def record_acknowledgement(
        self, officer: str, post: str, version: str, *, at_us: int, via: str,
        device: str | None = None, user: str | None = None,
    ) -> Acknowledgement:
        """Store one acknowledgement and audit it, in one transaction."""
        details: dict[str, Any] = {"officer": officer, "post": post, "version": version,
                                   "at_us": at_us, "via": via, "device": device, "user": user}
        actor = user or (f"device:{device}" if device else officer)
        with self._audit_write() as conn:
            new_id = conn.execute(orders_acknowledgements.insert().values(
                site=self.site, officer=officer, post=post, version=version, at_us=at_us, via=via,
                device=device, user=user,
            ).returning(orders_acknowledgements.c.id)).scalar_one()
            self._append_audit_locked(conn, actor, "orders.acknowledged",
                                      f"orders:{post}", _prepare_details(details))
        return Acknowledgement(int(new_id), officer, post, version, at_us, via, device, user)

    def acknowledgements(self, officer: str | None = None) -> list[Acknowledgement]:
        """Acknowledgements, oldest first."""
        q = (select(orders_acknowledgements)
             .where(orders_acknowledgements.c.site == self.site)
             .order_by(orders_acknowledgements.c.at_us, orders_acknowledgements.c.id))
        if officer is not None:
            q = q.where(orders_acknowledgements.c.officer == officer)
        with self.reading() as conn:
            return [_ack(r) for r in conn.execute(q)]

    # -- duty ------------------------------------------------------------------------

    def last_duty(self, officer: str, until_us: int) -> tuple[bool, frozenset[str]] | None:
        """The latest stored duty event of ``officer`` the live engine took, at or before
        ``until_us`` (a late one applied live counts from when it was applied):
        (on, capabilities); None if there is none."""
        q = select(events.c.on, events.c.capabilities).where(
            events.c.site == self.site, events.c.kind == "duty", events.c.officer == officer,
            until_us >= _LIVE_T, _TAKEN_LIVE
        ).order_by(_LIVE_T.desc(), events.c.id.desc()).limit(1)
        with self.reading() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        caps = frozenset(c for c in (row.capabilities or "").split(",") if c)
        return bool(row.on), caps

    def duty_since_many(self, officers: Sequence[str], until_us: int) -> dict[str, int]:
        """:meth:`duty_since` of many officers in one query per :data:`_IN_CHUNK` of them
        (a shift of thousands coming on duty at once asks no question per officer): each
        officer on duty at ``until_us`` -> when they last went on duty; the others absent."""
        out: dict[str, int] = {}
        names = sorted(set(officers))
        with self.reading() as conn:
            for i in range(0, len(names), _IN_CHUNK):
                q = _duty_since_query(self.site, names[i:i + _IN_CHUNK], until_us)
                out.update((str(o), int(t)) for o, t in conn.execute(q) if t is not None)
        return out

    def duty_since(self, officer: str, until_us: int) -> int | None:
        """When ``officer`` last went on duty at or before ``until_us`` (the duty events
        the live engine took: on time, or late and applied from then); None if they are
        off duty then."""
        base = and_(events.c.site == self.site, events.c.kind == "duty",
                    events.c.officer == officer, until_us >= _LIVE_T, _TAKEN_LIVE)
        with self.reading() as conn:
            last = conn.execute(select(events.c.on).where(base).order_by(
                _LIVE_T.desc(), events.c.id.desc()).limit(1)).first()
            if last is None or not last.on:
                return None
            off = conn.execute(select(_LIVE_T).where(
                base, or_(events.c.on == false(), events.c.on.is_(None))).order_by(
                _LIVE_T.desc(), events.c.id.desc()).limit(1)).scalar()
            q = select(_LIVE_T).where(base, events.c.on.is_not(false()))
            if off is not None:
                q = q.where(off < _LIVE_T)
            first = conn.execute(q.order_by(_LIVE_T, events.c.id).limit(1)).scalar()
        return None if first is None else int(first)


def _duty_since_query(site: str, officers: Sequence[str], until_us: int) -> Any:
    """Per officer whose latest duty event (taken live, at or before ``until_us``) is "on":
    the earliest "on" after their latest "off" (as :meth:`BriefingRepository.duty_since`).
    One pass over the officers' duty events (window functions, no join)."""
    is_off = or_(events.c.on == false(), events.c.on.is_(None))
    ranked = select(
        events.c.officer, events.c.on, _LIVE_T.label("lt"),
        func.max(case((is_off, _LIVE_T))).over(partition_by=events.c.officer).label("off_t"),
        func.row_number().over(partition_by=events.c.officer,
                               order_by=(_LIVE_T.desc(), events.c.id.desc())).label("rn"),
    ).where(events.c.site == site, events.c.kind == "duty", events.c.officer.in_(officers),
            until_us >= _LIVE_T, _TAKEN_LIVE).subquery("ranked")
    last_on = func.max(case((ranked.c.rn == 1, case((ranked.c.on == true(), 1), else_=0))))
    after_off = and_(ranked.c.on.is_not(false()),
                     or_(ranked.c.off_t.is_(None), ranked.c.lt > ranked.c.off_t))
    return (select(ranked.c.officer, func.min(case((after_off, ranked.c.lt))))
            .group_by(ranked.c.officer).having(last_on == 1))


def _shift_dict(s: Shift) -> Mapping[str, Any]:
    return {"id": s.id, "officer": s.officer, "post": s.post, "patrol": s.patrol,
            "start_us": s.start, "end_us": s.end}


def _qualification_dict(q: Qualification) -> Mapping[str, Any]:
    return {"officer": q.officer, "name": q.name, "valid_from_us": q.valid_from,
            "valid_until_us": q.valid_until}
