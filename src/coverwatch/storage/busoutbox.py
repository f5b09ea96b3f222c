"""Distributed mode's transactional outbox and fence, in PostgreSQL (the tables of 0011).

**Outbox.** A gateway commits events, then publishes them to JetStream. If it (or NATS)
dies in between, the rows are stored and nobody would publish them. So the commit also
writes one ``bus_outbox`` row per commit group (:func:`note_group`, called by the store
inside the very transaction that inserts the events): the group's id range, its exact ids
(0019) and earliest event time. The gateway publishes the group's rows in chunks of
:data:`CHUNK_EVENTS` (:func:`chunks`), one message each. A PubAck is not what forgets the row
(a stream leader can acknowledge and then lose a message): the site's owner does
(:func:`published`), once its own follower delivered every event key of the group and its
checkpoint covers them (:func:`pending` gives the keys). What it has not seen by then it
republishes (:func:`group_rows`) as the very chunks the gateway sent, under the same message
ids, so JetStream drops one of two copies. Until the events are delivered the owner holds
its watermark at the group's earliest time, so a republished event is not late.

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
    "CHUNK_EVENTS",
    "FENCE",
    "Fenced",
    "Pending",
    "check",
    "chunks",
    "claim",
    "group_rows",
    "note_group",
    "pending",
    "published",
]

# (site, epoch) of the owner's write in progress: set by the worker around its writes
# (threads started with asyncio.to_thread inherit it); the store checks it in _write.
# Events per bus message of a commit group: the gateway and the owner's relay cut a group's
# ids the same way (a message of 500 fixes is ~100 KiB, well under NATS's 1 MiB).
CHUNK_EVENTS = 500

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
    # The event keys of the group (with_keys), in id order: its own rows if ``ids`` is
    # known, else every row of its id range.
    keys: tuple[str, ...] = ()
    # The group's own event ids, ascending (None: noted before 0019, only the range known).
    ids: tuple[int, ...] | None = None


def chunks(ids: Sequence[int]) -> list[list[int]]:
    """A commit group's ids (ascending) as its messages' ids, :data:`CHUNK_EVENTS` each."""
    return [list(ids[i : i + CHUNK_EVENTS]) for i in range(0, len(ids), CHUNK_EVENTS)]


def encode_ids(ids: Sequence[int]) -> str:
    """Ascending ids as runs: ``[17, 18, 19, 43]`` -> ``"17-19,43"`` (a commit's ids are
    mostly consecutive, so the text stays short whatever the group's size)."""
    runs: list[str] = []
    start = prev = None
    for i in ids:
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            runs.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = i
    if start is not None:
        runs.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(runs)


def decode_ids(text: str) -> tuple[int, ...]:
    """The ids :func:`encode_ids` wrote."""
    out: list[int] = []
    for run in filter(None, text.split(",")):
        first, _, last = run.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return tuple(out)


def note_group(conn: Connection, site: str, stored: Sequence[tuple[int, str]],
               earliest_us: int) -> None:
    """Record a commit group in the outbox (inside the transaction that stores it)."""
    if not stored:
        return
    ids = sorted(i for i, _ in stored)
    conn.execute(bus_outbox.insert().values(
        site=site, first_id=ids[0], last_id=ids[-1], earliest_us=int(earliest_us),
        created_us=now_us(), ids=encode_ids(ids)))


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
        own = {(r.site, int(r.first_id)): frozenset(decode_ids(r.ids))
               for r in rows if r.ids is not None}
        if with_keys and rows:
            # The id range, then the group's own ids of it (other gateways' rows interleave).
            joined = bus_outbox.join(events, and_(
                events.c.site == bus_outbox.c.site,
                events.c.id >= bus_outbox.c.first_id, events.c.id <= bus_outbox.c.last_id))
            for site, first_id, event_id, key in conn.execute(
                    select(bus_outbox.c.site, bus_outbox.c.first_id, events.c.id, events.c.key)
                    .select_from(joined).where(bus_outbox.c.site.in_(list(sites)))
                    .order_by(events.c.id)):
                group = (site, int(first_id))
                if group not in own or int(event_id) in own[group]:
                    keys.setdefault(group, []).append(str(key))
    return [Pending(r.site, int(r.first_id), int(r.last_id), int(r.earliest_us),
                    int(r.created_us), tuple(keys.get((r.site, int(r.first_id)), ())),
                    None if r.ids is None else decode_ids(r.ids))
            for r in rows]


def group_rows(engine: Engine, group: Pending) -> list[dict[str, Any]]:
    """The stored events of a group, in id order: its own (``ids``), or for a group noted
    before 0019 every row of its id range (other gateways' rows too: republished one by
    one, their message ids drop them)."""
    with engine.connect() as conn:
        rows = conn.execute(select(events).where(
            events.c.site == group.site,
            events.c.id >= group.first_id, events.c.id <= group.last_id,
        ).order_by(events.c.id)).all()
    own = None if group.ids is None else frozenset(group.ids)
    # str(): reserved column names ("on", "open") come as quoted_name, which orjson refuses.
    return [{str(k): v for k, v in r._mapping.items()} for r in rows
            if own is None or int(r.id) in own]


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


