"""Site ownership leases in the ``<prefix>-leases`` KV bucket, and the dead-man check.

Key ``site.<site>`` holds the owner of a site; ``worker.<id>`` is a worker's
heartbeat. Every write is a compare-and-set on the key's revision (``create``
for a free key, ``update(last=…)`` otherwise), so of two contenders exactly
one wins. The owner renews by rewriting its key every ``renew_s``.

Expiry needs no synchronised clocks. A holder is *stale* when this node has
seen the same revision for longer than ``lease_s`` on its own monotonic clock;
only then may it take the key over, with ``update(last=that revision)``. The
owner, for its part, treats the lease as valid only until ``lease_s`` minus a
margin after it *sent* its last successful renewal, so it has stopped acting
before anyone can see its lease as stale. The revision the owner got when it
acquired the key is its *epoch*, a fencing token for what it writes elsewhere.

The bucket expires keys server-side: its TTL (:func:`lease_ttl`, twice the lease) is
the age at which JetStream drops a key's last write, so a dead worker's lease and
heartbeat keys vanish with no client sweeping them, while a live owner's, rewritten
every ``renew_s``, never age. A key vanishes only long after every node could see it
stale; the next owner then *creates* it, and its revision, a stream sequence, is still
higher than any earlier epoch of the site.

The same view gives the dead-man check: a site with no live owner for longer
than ``after_s`` is reported from any node that runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

import orjson
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from coverwatch.bus.log import reconcile_replicas

__all__ = [
    "DeadmanCheck",
    "Holder",
    "LeaseTable",
    "LeaseView",
    "balanced_moves",
    "lease_name",
    "lease_ttl",
    "open_bucket",
    "rank",
    "watch_for_orphans",
]

log = logging.getLogger("coverwatch.bus")

SITE = "site."
WORKER = "worker."


def lease_ttl(lease_s: float) -> float:
    """The leases bucket's TTL: twice the lease, so a key the server drops was stale to every
    node long before, even an owner whose renewals a busy process delayed."""
    return 2.0 * lease_s


async def open_bucket(js: JetStreamContext, bucket: str, *, replicas: int | None = None,
                      history: int = 1, max_value_size: int | None = None,
                      ttl_s: float | None = None) -> KeyValue:
    """The KV bucket, created if missing; ``replicas`` as for :class:`EventLog`; ``ttl_s``
    (None: keys never expire, an existing bucket's TTL left alone) is set on an existing
    bucket too."""
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(api.KeyValueConfig(
            bucket=bucket, history=history, replicas=replicas or 1,
            storage=api.StorageType.FILE, max_value_size=max_value_size, ttl=ttl_s,
        ))
    await reconcile_replicas(js, f"KV_{bucket}", replicas, max_age_s=ttl_s)
    return kv


def lease_name(site: str, partitions: int | None) -> str:
    """The lease covering ``site``: the site's own (``partitions`` None), else its partition's,
    ``p.<k>`` with ``k`` a stable hash of the site id modulo ``partitions`` (a site id has no
    dot, so a partition's name is never a site's)."""
    if not partitions:
        return site
    digest = hashlib.blake2b(site.encode(), digest_size=8).digest()
    return f"p.{int.from_bytes(digest) % partitions}"


def rank(worker: str, site: str) -> int:
    """Rendezvous-hash score: workers prefer different free sites, so they rarely collide."""
    return int.from_bytes(hashlib.blake2b(f"{worker}/{site}".encode(), digest_size=8).digest())


@dataclass(slots=True)
class Holder:
    """What this node has seen of one key: its value's owner and revision, and when."""

    owner: str
    revision: int
    seen: float  # this node's monotonic clock when the revision was first seen


@dataclass
class LeaseView:
    """A live map of the leases bucket, kept by a KV watcher (one per node)."""

    kv: KeyValue
    lease_s: float
    clock: Callable[[], float] = time.monotonic
    sites: dict[str, Holder] = field(default_factory=dict)
    workers: dict[str, Holder] = field(default_factory=dict)
    # When each site key was last seen gone (deleted, or never seen), for the dead-man check.
    released: dict[str, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="lease-view")
        await asyncio.wait_for(self._ready.wait(), 10.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            try:
                watcher = await self.kv.watchall()
                async for entry in watcher:
                    if entry is None:  # the initial values are in
                        self._ready.set()
                        continue
                    self.note(entry.key, entry.value, entry.revision or 0, entry.operation)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a NATS restart: watch again
                log.warning("lease watcher restarts: %s", e)
                await asyncio.sleep(0.5)

    def note(self, key: str, value: bytes | None, revision: int, operation: str | None) -> None:
        """Record a key's new revision (from the watcher, or from this node's own write)."""
        if not key.startswith((SITE, WORKER)):
            return
        is_site = key.startswith(SITE)
        table = self.sites if is_site else self.workers
        name = key[len(SITE):] if is_site else key[len(WORKER):]
        old = table.get(name)
        if old is not None and old.revision >= revision:
            return  # our own write, noted before the watcher brought it
        if operation in ("DEL", "PURGE") or not value:
            table.pop(name, None)
            if is_site:
                self.released.setdefault(name, self.clock())
            return
        owner = str(orjson.loads(value).get("owner", ""))
        table[name] = Holder(owner, revision, self.clock())
        if is_site:
            self.released.pop(name, None)

    def live(self, holder: Holder | None) -> bool:
        return holder is not None and self.clock() - holder.seen <= self.lease_s

    def live_workers(self) -> set[str]:
        return {w for w, h in self.workers.items() if self.live(h)}

    def owner(self, site: str) -> str | None:
        h = self.sites.get(site)
        return h.owner if h is not None and self.live(h) else None

    def orphan_since(self, site: str, first_seen: float) -> float | None:
        """Since when (monotonic) the site has had no live owner, or None if it has one."""
        h = self.sites.get(site)
        if h is not None:
            return None if self.live(h) else h.seen + self.lease_s
        return self.released.get(site, first_seen)


class LeaseTable:
    """One worker's side of the leases: acquire, renew, release, heartbeat."""

    def __init__(self, kv: KeyValue, view: LeaseView, worker: str, *, lease_s: float,
                 margin_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.kv = kv
        self.view = view
        self.worker = worker
        self.lease_s = lease_s
        self.margin_s = lease_s / 3 if margin_s is None else margin_s
        self.clock = clock
        self.revisions: dict[str, int] = {}  # site -> current revision of our lease
        self.epochs: dict[str, int] = {}  # site -> revision at acquisition (fencing token)
        self.valid_until: dict[str, float] = {}

    def _value(self, site: str) -> bytes:
        return orjson.dumps({"owner": self.worker, "site": site, "lease_s": self.lease_s,
                             "at": time.time()})

    def owns(self, site: str) -> bool:
        """Whether this worker may still act for ``site`` (nobody can see its lease stale)."""
        return site in self.revisions and self.clock() < self.valid_until.get(site, 0.0)

    async def try_acquire(self, site: str) -> int | None:
        """Take a free or stale site; returns the epoch, or None if another won or holds it."""
        key = SITE + site
        held = self.view.sites.get(site)
        sent = self.clock()
        try:
            if held is None:
                rev = await self.kv.create(key, self._value(site))
            elif not self.view.live(held) or held.owner == self.worker:
                rev = await self._replace(key, self._value(site), held.revision)
            else:
                return None
        except KeyWrongLastSequenceError:
            return None
        except Exception as e:  # the key was deleted then recreated meanwhile, or NATS is down
            log.info("acquire %s failed: %s", site, e)
            return None
        self.view.note(key, self._value(site), rev, "PUT")
        self.revisions[site] = self.epochs[site] = rev
        self.valid_until[site] = sent + self.lease_s - self.margin_s
        return rev

    async def _replace(self, key: str, value: bytes, last: int) -> int:
        """Overwrite revision ``last`` of a stale key; if the server has dropped the key
        meanwhile (the bucket's TTL: no watcher hears of that) it is free: create it."""
        try:
            return await self.kv.update(key, value, last=last)
        except KeyWrongLastSequenceError:
            try:
                await self.kv.get(key)
            except KeyNotFoundError:  # expired, or deleted: whoever creates it first wins
                return await self.kv.create(key, value)
            raise

    async def renew(self, site: str, kv: KeyValue | None = None) -> bool:
        """Rewrite our lease; False (and forgotten) if it was lost.

        ``kv`` is another connection's handle on the bucket (the worker's renewal
        thread); this node's view then learns of the write from its watcher.
        """
        last = self.revisions.get(site)
        if last is None:
            return False
        sent = self.clock()
        try:
            rev = await (kv or self.kv).update(SITE + site, self._value(site), last=last)
        except KeyWrongLastSequenceError:
            if self.revisions.get(site) == last:
                self._forget(site)
            return False
        except Exception as e:  # NATS unreachable: keep trying until the lease runs out
            log.info("renew %s failed: %s", site, e)
            if not self.owns(site):
                self._forget(site)
            return self.owns(site)
        if self.revisions.get(site) != last:
            return False  # released meanwhile: release() sees the newer revision
        self.revisions[site] = rev
        self.valid_until[site] = sent + self.lease_s - self.margin_s
        if kv is None:
            self.view.note(SITE + site, self._value(site), rev, "PUT")
        return True

    async def release(self, site: str) -> None:
        """Give the site up (after a final checkpoint) so another worker takes it at once."""
        last = self.revisions.get(site)
        self._forget(site)
        if last is None:
            return
        for _ in range(3):
            try:
                await self.kv.delete(SITE + site, last=last)
                return
            except KeyWrongLastSequenceError:
                # A renewal in flight landed first: delete that revision if still ours.
                try:
                    entry = await self.kv.get(SITE + site)
                except Exception:
                    return
                if not entry.value or orjson.loads(entry.value).get("owner") != self.worker:
                    return
                last = entry.revision or 0
            except Exception as e:
                log.info("release %s failed: %s", site, e)
                return

    def _forget(self, site: str) -> None:
        self.revisions.pop(site, None)
        self.epochs.pop(site, None)
        self.valid_until.pop(site, None)

    async def heartbeat(self, load: int, kv: KeyValue | None = None) -> None:
        value = orjson.dumps({"owner": self.worker, "sites": load, "at": time.time()})
        try:
            rev = await (kv or self.kv).put(WORKER + self.worker, value)
        except Exception as e:
            log.info("heartbeat failed: %s", e)
            return
        if kv is None:
            self.view.note(WORKER + self.worker, value, rev, "PUT")

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.kv.delete(WORKER + self.worker)


def balanced_moves(worker: str, sites: Collection[str], view: LeaseView,
                   mine: Collection[str]) -> tuple[list[str], list[str]]:
    """Which sites to try to take and which to give up, to even the load.

    Each live worker aims at ``ceil(sites / live workers)``. Free sites are
    tried in rendezvous-hash order, so simultaneous workers mostly try
    different ones; surplus goes only when another live worker is below target.
    """
    live = view.live_workers() | {worker}
    target = math.ceil(len(sites) / len(live)) if sites else 0
    mine = [s for s in mine if s in sites]
    gone = [s for s in mine if s not in sites]
    take: list[str] = []
    give: list[str] = list(gone)
    if len(mine) < target:
        free = [s for s in sites if s not in mine and view.owner(s) is None]
        free.sort(key=lambda s: rank(worker, s), reverse=True)
        take = free[: target - len(mine)]
    elif len(mine) > target:
        loads = {w: 0 for w in live}
        for s in sites:
            o = view.owner(s)
            if o in loads:
                loads[o] += 1
        if any(n < target for w, n in loads.items() if w != worker):
            surplus = sorted(mine, key=lambda s: rank(worker, s))
            give += surplus[: len(mine) - target]
    return take, give


@dataclass
class DeadmanCheck:
    """Reports a site that has had no live owner for longer than ``after_s``.

    ``on_orphan(site, seconds)`` is called once per outage (the server turns it
    into a ``system`` alert); ``on_owned(site)`` when an owner is back.
    """

    view: LeaseView
    sites: Callable[[], Collection[str]]
    after_s: float
    on_orphan: Callable[[str, float], Awaitable[None]]
    on_owned: Callable[[str], Awaitable[None]] | None = None
    lease_of: Callable[[str], str] = str  # a site's lease (its partition's, if partitioned)
    _first_seen: dict[str, float] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)

    async def check(self) -> list[str]:
        """One pass; returns the sites reported in it."""
        now = self.view.clock()
        reported = []
        for site in self.sites():
            first = self._first_seen.setdefault(site, now)
            since = self.view.orphan_since(self.lease_of(site), first)
            if since is None:
                if site in self._reported:
                    self._reported.discard(site)
                    if self.on_owned is not None:
                        await self.on_owned(site)
                continue
            if now - since > self.after_s and site not in self._reported:
                self._reported.add(site)
                reported.append(site)
                await self.on_orphan(site, now - since)
        return reported


async def watch_for_orphans(
    js: JetStreamContext, bucket: str, sites: Callable[[], Collection[str]], *,
    lease_s: float, after_s: float, on_orphan: Callable[[str, float], Awaitable[None]],
    on_owned: Callable[[str], Awaitable[None]] | None = None, every_s: float = 1.0,
    stop: asyncio.Event, partitions: int | None = None,
) -> None:
    """Run the dead-man check on a node that owns nothing (a gateway) until ``stop``."""
    kv = await open_bucket(js, bucket, ttl_s=lease_ttl(lease_s))
    view = LeaseView(kv, lease_s)
    await view.start()
    check = DeadmanCheck(view, sites, after_s, on_orphan, on_owned,
                         lease_of=lambda site: lease_name(site, partitions))
    try:
        while not stop.is_set():
            try:
                await check.check()
            except Exception:  # a failing hook must not end the watch
                log.exception("dead-man check failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    finally:
        await view.stop()
