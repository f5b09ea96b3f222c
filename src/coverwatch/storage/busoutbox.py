"""Distributed mode's transactional outbox and fence, in PostgreSQL (the tables of 0011).

**Outbox.** A gateway commits events, then publishes them to JetStream. If it (or NATS)
dies in between, the rows are stored and nobody would publish them. So the commit also
writes one ``bus_outbox`` row per commit group (:func:`note_group`, called by the store
inside the very transaction that inserts the events): the group's id range and earliest
event time. A PubAck is not what forgets the row (a stream leader can acknowledge and
then lose a message): the site's owner does (:func:`published`), once its own follower
delivered every event key of the group and its checkpoint covers them (:func:`pending`
gives the keys). What it has not seen by then it republishes (:func:`group_rows`),
idempotently, since the message id is the event key. Until the events are delivered the
owner holds its watermark at the group's earliest time, so a republished event is not late.

**Fence.** ``bus_fences`` holds each site's owner epoch (the lease revision at its
acquisition). A new owner raises it (:func:`claim`); every write the owner makes for the
site checks it inside the same transaction (:func:`check`), so a paused, stale owner's
write fails with :class:`Fenced` instead of landing after its successor's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from coverwatch.errors import CoverwatchError
from coverwatch.storage.base import now_us
from coverwatch.storage.tables import bus_fences, bus_outbox, events

__all__ = [
    "FENCE",
    "Fenced",
    "Pending",
    "check",
    "claim",
    "group_rows",
    "note_group",
    "pending",
    "published",
]

# (site, epoch) of the owner's write in progress: set by the worker around its writes
# (threads started with asyncio.to_thread inherit it); the store checks it in _write.
FENCE: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "coverwatch_fence", default=None)


class Fenced(CoverwatchError):
    """A write by an owner whose lease epoch is no longer the site's: refused."""


@dataclass(frozen=True, slots=True)
class Pending:
    """One commit group not yet acknowledged by the stream."""

    site: str
    first_id: int
    last_id: int
    earliest_us: int
    created_us: int
    # The event keys stored in the group's id range (with_keys), in id order.
    keys: tuple[str, ...] = ()


def note_group(conn: Connection, site: str, stored: Sequence[tuple[int, str]],
               earliest_us: int) -> None:
    """Record a commit group in the outbox (inside the transaction that stores it)."""
    if not stored:
        return
    ids = [i for i, _ in stored]
    conn.execute(bus_outbox.insert().values(
        site=site, first_id=min(ids), last_id=max(ids), earliest_us=int(earliest_us),
        created_us=now_us()))


def published(engine: Engine, groups: Iterable[tuple[str, int]]) -> int:
    """Forget groups (site, first_id) every event of which the stream acknowledged."""
    keys = list(groups)
    if not keys:
        return 0
    with engine.begin() as conn:
        got = conn.execute(delete(bus_outbox).where(
            tuple_(bus_outbox.c.site, bus_outbox.c.first_id).in_(keys)))
    return int(got.rowcount or 0)


def pending(engine: Engine, sites: Sequence[str], *, with_keys: bool = False
            ) -> list[Pending]:
    """Every group of these sites still in the outbox (one query, whatever the number of
    sites; ``with_keys``: and a second for the event keys of them all)."""
    if not sites:
        return []
    keys: dict[tuple[str, int], list[str]] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(bus_outbox).where(bus_outbox.c.site.in_(list(sites)))
                            .order_by(bus_outbox.c.site, bus_outbox.c.first_id)).all()
        if with_keys and rows:
            joined = bus_outbox.join(events, and_(
                events.c.site == bus_outbox.c.site,
                events.c.id >= bus_outbox.c.first_id, events.c.id <= bus_outbox.c.last_id))
            for site, first_id, key in conn.execute(
                    select(bus_outbox.c.site, bus_outbox.c.first_id, events.c.key)
                    .select_from(joined).where(bus_outbox.c.site.in_(list(sites)))
                    .order_by(events.c.id)):
                keys.setdefault((site, int(first_id)), []).append(str(key))
    return [Pending(r.site, int(r.first_id), int(r.last_id), int(r.earliest_us),
                    int(r.created_us), tuple(keys.get((r.site, int(r.first_id)), ())))
            for r in rows]


def group_rows(engine: Engine, group: Pending) -> list[dict[str, Any]]:
    """The stored events of a group (other gateways' rows inside its id range included:
    republishing them is harmless, their message ids drop them)."""
    with engine.connect() as conn:
        rows = conn.execute(select(events).where(
            events.c.site == group.site,
            events.c.id >= group.first_id, events.c.id <= group.last_id,
        ).order_by(events.c.id)).all()
    # str(): reserved column names ("on", "open") come as quoted_name, which orjson refuses.
    return [{str(k): v for k, v in r._mapping.items()} for r in rows]


def claim(engine: Engine, site: str, epoch: int, owner: str) -> bool:
    """Raise the site's fence to ``epoch`` (a new owner); False if a newer owner holds it."""
    now = now_us()
    with engine.begin() as conn:
        got = conn.execute(update(bus_fences).where(
            bus_fences.c.site == site, bus_fences.c.epoch <= epoch,
        ).values(epoch=epoch, owner=owner, updated_us=now))
        if got.rowcount:
            return True
        held = conn.execute(select(bus_fences.c.epoch).where(
            bus_fences.c.site == site)).scalar()
        if held is not None:
            return False
    try:
        with engine.begin() as conn:
            conn.execute(bus_fences.insert().values(site=site, epoch=epoch, owner=owner,
                                                    updated_us=now))
        return True
    except IntegrityError:  # another owner claimed it meanwhile
        return claim(engine, site, epoch, owner)


def check(conn: Connection, site: str) -> None:
    """Inside a write transaction: refuse it if the owner's epoch (:data:`FENCE`) is stale.

    Locks the site's fence row (shared), so a successor's :func:`claim` waits for
    this transaction and every write of the old owner lands before the new one's first.
    """
    fence = FENCE.get()
    if fence is None or fence[0] != site:
        return
    query = select(bus_fences.c.epoch).where(bus_fences.c.site == site)
    if conn.dialect.name == "postgresql":
        # The epoch is also left in the transaction (``coverwatch.fence_epoch``) for triggers
        # that audit the fence (bench/faults.py), in the same round trip.
        query = select(bus_fences.c.epoch, func.set_config(
            "coverwatch.fence_epoch", str(fence[1]), True)).where(
            bus_fences.c.site == site).with_for_update(read=True, of=bus_fences)
    held = conn.execute(query).scalar()
    if held is None or int(held) != fence[1]:
        raise Fenced(f"site {site}: write by lease epoch {fence[1]} refused, "
                     f"the site's owner is at epoch {held}")


