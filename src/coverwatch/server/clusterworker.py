"""Distributed mode, the worker's side: evaluate owned sites from the bus, alerts to PostgreSQL.

A :class:`ClusterWorker` runs one :class:`coverwatch.bus.Worker` over every
site of the deployment (the workers of all nodes share them out by lease), with
the live cover engine as its evaluator (``server/buscover.py``). Its output sink
applies cover changes exactly as the single process does
(:func:`coverwatch.server.handlers.alerts.apply_cover_changes`: raise and resolve
alerts, each recorded and
audited in PostgreSQL), but only while this node holds the site's lease at
the run's epoch. Before applying, it reads the alerts the changes are about
from the store, so a change re-made after a takeover finds its alert there
and raises or resolves nothing twice. Events the stream decided were late are
flagged late in the store, as the single process flags them at ingest.

Escalation runs on the node's ticker like any alert's; ``BusHooks.escalating``
lets through the cover alerts of owned sites only. The dead-man check runs in
the worker's round and reports through the gateway module's hooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from coverwatch.bus import BusNames, SiteEvaluator, Worker, WorkerSettings
from coverwatch.bus.checkpoints import Checkpoint
from coverwatch.bus.log import Published, chunk_msg_id
from coverwatch.clock import wall_clock_us
from coverwatch.domain.time import seconds_to_us
from coverwatch.engine import CoverChange
from coverwatch.server.buscover import BusCover, LateEvents
from coverwatch.server.gateway import RESEND_AFTER_S, wire
from coverwatch.server.handlers.alerts import settled_by
from coverwatch.server.handlers.sync import apply_as_owner, deadman_reports, refresh_books
from coverwatch.storage.busoutbox import (
    FENCE,
    Fenced,
    Pending,
    check,
    claim,
    group_rows,
    pending,
    published,
)
from coverwatch.storage.busoutbox import chunks as id_chunks
from coverwatch.storage.devicereports import last_reports_of_sites

if TYPE_CHECKING:
    from nats.aio.client import Client

    from coverwatch.server.unit import SiteUnit

__all__ = ["ClusterWorker", "checkpoint_secret"]

log = logging.getLogger("coverwatch.server")

# A commit group whose events this owner has not all seen this long after its commit: its
# gateway (or NATS) failed between commit and publish, or the stream lost what it
# acknowledged; the owner republishes them. Younger ones may still be on their way, so
# they only hold the watermark back.
RELAY_AFTER_S = 2.0


def checkpoint_secret(svc: SiteUnit) -> bytes:
    """The key that signs checkpoints: ``COVERWATCH_BUS_SECRET``, or derived from the audit key.

    Every node of a deployment must have the same one (the same audit key file,
    or the same variable), or a node cannot resume another's checkpoint.
    """
    env = os.environ.get("COVERWATCH_BUS_SECRET")
    if env:
        return hashlib.sha256(env.encode()).digest()
    ring = svc.store.audit_keyring
    if ring is None or not ring.keys:
        raise RuntimeError("distributed mode needs COVERWATCH_BUS_SECRET or an audit key")
    _, key = ring.keys[-1]  # the oldest: rotating the audit key must not orphan checkpoints
    return hmac.new(key, b"coverwatch bus checkpoints", hashlib.sha256).digest()


def relay_messages(site: str, g: Pending, rows: Sequence[Mapping[str, Any]],
                   missing: set[str]
                   ) -> tuple[list[tuple[str, dict[str, Any]]],
                              list[tuple[str, list[tuple[str, dict[str, Any]]]]]]:
    """What the relay publishes of group ``g`` (its stored ``rows``, in id order) to bring
    the ``missing`` keys: ``(singles, chunks)``. A chunk of the group (as the gateway cut
    it) with every key missing goes whole under the gateway's message id; the missing keys
    of a chunk partly seen (single-event messages of an older gateway), and of a group
    noted before 0018 (ids unknown), go one by one under their keys."""
    singles: list[tuple[str, dict[str, Any]]] = []
    batched: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
    by_id = {int(r["id"]): r for r in rows}
    parts = id_chunks(g.ids) if g.ids is not None else [[int(r["id"]) for r in rows]]
    for n, part in enumerate(parts):
        events = [(str(by_id[i]["key"]), wire(by_id[i])) for i in part if i in by_id]
        want = [e for e in events if e[0] in missing]
        if g.ids is not None and want and len(want) == len(part):
            batched.append((chunk_msg_id(site, g.first_id, n), want))
        else:
            singles += want
    return singles, batched


def _fence_check(key: str) -> Any:
    def fence_check(conn: Any) -> None:
        check(conn, key)

    return fence_check


class ClusterWorker:
    """This node's evaluator worker; see the module docstring."""

    def __init__(self, sites: Mapping[str, SiteUnit], nc: Client, names: BusNames,
                 settings: WorkerSettings | None = None) -> None:
        self.sites = sites
        svc = next(iter(sites.values()))
        self.secret = checkpoint_secret(svc)
        self.applied = 0  # cover changes applied (for logs and tests)
        self.relayed = 0  # events republished from the outbox (for logs and tests)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._to_refresh: set[str] = set()  # sites taken over, their books to refresh
        self._refreshing: asyncio.Task[Any] | None = None
        self._fenced: dict[str, int] = {}  # site -> the epoch claimed in bus_fences
        # The owned sites' devices' newest reports (store key -> device -> report).
        self._reports: dict[str, dict[str, dict[str, Any]]] = {}
        self._reports_at = -(1 << 62)
        self._reports_lock = asyncio.Lock()
        self.engine = svc.store.engine
        for other in sites.values():  # inert unless FENCE is set: only the owner's writes
            other.store.fence_check = _fence_check(other.store.site)

        orphaned, owned = deadman_reports(sites)
        self.worker = Worker(
            nc, sites=lambda: list(sites), factory=self._evaluator, names=names,
            sink=self._sink, settings=settings or WorkerSettings(
                lateness_s=svc.settings.lateness_s,
                max_lateness_s=svc.settings.max_lateness_s,
                replicas=svc.settings.bus_replicas,
                partitions=svc.settings.bus_partitions),
            on_orphan=orphaned, on_owned=owned, on_run=self._on_run,
            lease_url=svc.settings.bus_url, before_watermarks=self._relay,
        )
        self._started = False

    async def start(self) -> None:
        await self.worker.start()
        self._started = True

    async def run(self, stop: asyncio.Event) -> None:
        """Take part until ``stop``; then checkpoint and hand every site over."""
        await self.worker.run(stop)

    def owns(self, site: str) -> bool:
        return self._started and site in self.worker.runs and self.worker.owns(site)

    def checkpoint_of(self, site: str) -> Checkpoint | None:
        """The latest checkpoint of a site this node's run evaluates (None: no run here)."""
        run = self.worker.runs.get(site) if self.owns(site) else None
        return run.cp if run is not None and run.started else None

    def _holds(self, site: str, epoch: int) -> bool:
        # Fencing: a run of an older epoch (lease lost and taken again) acts no more.
        return self.owns(site) and self.worker.epoch(site) == epoch

    def _evaluator(self, site: str, state: bytes | None) -> SiteEvaluator:
        svc = self.sites.get(site)
        if svc is None:
            raise ValueError(f"site {site!r} is not served by this node")
        return BusCover(svc.site, secret=self.secret,
                        lateness_us=seconds_to_us(svc.settings.lateness_s),
                        max_lateness_us=seconds_to_us(svc.settings.max_lateness_s),
                        state=state)

    async def _relay(self, sites: list[str]) -> dict[str, int]:
        """The bus outbox, for the owned sites: forget the groups this owner has evaluated
        and checkpointed (every key delivered by its own follower), republish those it has
        not seen RELAY_AFTER_S after their commit, and say how far each site's watermark
        may go (not past a group not delivered yet). Two queries for all the sites."""
        by_key = {self.sites[s].store.site: s for s in sites if s in self.sites}
        # Keys delivered up to here came after their group's commit, so before the query:
        # one of them in no group found has had its group forgotten.
        before = {s: r.seq for s, r in self.worker.runs.items()}
        groups = await asyncio.to_thread(pending, self.engine, list(by_key), with_keys=True)
        caps: dict[str, int] = {}
        done: list[tuple[str, int]] = []
        now = wall_clock_us()
        for g in groups:
            site = by_key[g.site]
            run = self.worker.runs.get(site)
            seen = self.worker.log.delivered.get(site)
            if run is None or seen is None:
                caps[site] = min(caps.get(site, g.earliest_us), g.earliest_us)
                continue
            missing = [k for k in g.keys if k not in seen.keys]
            if not missing:
                cp = run.cp.seq if run.cp is not None else 0
                if all(seen.keys[k] <= cp for k in g.keys):
                    done.append((g.site, g.first_id))  # evaluated, and in the checkpoint
                continue
            caps[site] = min(caps.get(site, g.earliest_us), g.earliest_us)
            if now - g.created_us >= RELAY_AFTER_S * 1e6:
                try:
                    await self._republish(site, g, set(missing), run.seq)
                except Exception as e:  # NATS away: held back, tried again next round
                    log.warning("site %s: republishing from the outbox failed: %s", site, e)
        if done:
            await asyncio.to_thread(published, self.engine, done)
        for site in sites:  # forget keys whose group is gone (kept: the unevaluated)
            seen = self.worker.log.delivered.get(site)
            run = self.worker.runs.get(site)
            if seen is not None and run is not None and run.cp is not None:
                keep = {k for g in groups if by_key.get(g.site) == site
                        and (g.site, g.first_id) not in done for k in g.keys}
                upto = min(run.cp.seq, before.get(site, 0))
                seen.keys = {k: s for k, s in seen.keys.items() if s > upto or k in keep}
        return caps

    async def device_reports(self, store_site: str, now_us: int
                             ) -> dict[str, dict[str, Any]]:
        """Each device's newest report at ``store_site`` (a site this node owns), read for
        every owned site in one query at most once a second: the owner's check of silent
        devices costs one PostgreSQL transaction a second, not one per site."""
        async with self._reports_lock:
            if now_us - self._reports_at >= 1_000_000 or store_site not in self._reports:
                owned = [self.sites[s].store.site for s in list(self.worker.runs)
                         if s in self.sites]
                self._reports = await asyncio.to_thread(
                    last_reports_of_sites, self.engine, {*owned, store_site})
                self._reports_at = now_us
            return self._reports.get(store_site, {})

    async def _republish(self, site: str, g: Pending, missing: set[str], consumed: int
                         ) -> None:
        """Publish a group's events this owner has not seen: each chunk of it none of whose
        events it has seen as the gateway published it (:func:`relay_messages`, the same
        message id, so JetStream keeps one of two copies), the rest (a chunk partly seen; a
        group noted before 0018) one by one under their keys. One the stream calls a
        duplicate at a sequence this owner's follower has already passed was not delivered
        to it: the stream acknowledged it and lost it, or the replica this follower reads
        differs from the leader's (NATS 2.9 replicas were seen to diverge after a
        partition), and it goes again under a fresh message id (the old one stays in the
        duplicate window). At a sequence before this run's start it is checked on the
        stream by message id: there, a previous owner evaluated it."""
        rows = await asyncio.to_thread(group_rows, self.engine, g)
        log_ = self.worker.log
        singles, batched = relay_messages(site, g, rows, missing)
        # (message id, its events, the PubAck, whether it went as one event under its key)
        sent: list[tuple[str, Sequence[tuple[str, Any]], Published, bool]] = []
        if singles:
            acks = await log_.publish(site, singles)
            sent += [(k, [(k, row)], a, True)
                     for (k, row), a in zip(singles, acks, strict=True)]
        got = await asyncio.gather(*(log_.publish_events(site, events, msg_id)
                                     for msg_id, events in batched))
        sent += [(msg_id, events, a, False)
                 for (msg_id, events), a in zip(batched, got, strict=True)]
        seen = log_.delivered[site]
        # Not a duplicate, or one not consumed yet: on its way to this owner.
        held = [m for m in sent if m[2].duplicate and 0 < m[2].seq <= consumed
                and not any(k in seen.keys for k, _ in m[1])]
        earlier = [m for m in held if m[2].seq <= seen.after_seq]
        there = await asyncio.gather(*(log_.key_at(m[2].seq) for m in earlier))
        lost = [m for m in held if m[2].seq > seen.after_seq]
        for m, at in zip(earlier, there, strict=True):
            if at == m[0]:  # evaluated by an owner before this run
                seen.keys.update((k, m[2].seq) for k, _ in m[1])
            else:
                lost.append(m)
        fresh = f"r{wall_clock_us()}"
        lost_singles = [e for _, events, _, single in lost if single for e in events]
        if lost_singles:
            await log_.publish(site, lost_singles, fresh=fresh)
        await asyncio.gather(*(log_.publish_events(site, events, msg_id, fresh=fresh)
                               for msg_id, events, _, single in lost if not single))
        added = sum(len(m[1]) for m in sent if not m[2].duplicate)
        again = sum(len(m[1]) for m in lost)
        self.relayed += again + added
        log.warning("site %s: %d of the %d events of a commit group (ids %d-%d) not seen "
                    "here: %d republished (%d message(s)), %d already in the stream, %d "
                    "acknowledged by it and lost, sent again under a fresh id", site,
                    len(missing), len(g.keys), g.first_id, g.last_id, added, len(sent),
                    len(missing) - added - again, again)

    async def fence_current(self, site: str) -> bool:
        """Fence this task's writes for ``site`` at the current lease's epoch (escalation
        steps and their deliveries); False if this node does not own the site (now)."""
        epoch = self.worker.epoch(site) if self.owns(site) else None
        if epoch is None:
            return False
        return await self._fence(site, epoch)

    async def _fence(self, site: str, epoch: int) -> bool:
        """Hold the site's fence at this run's epoch (claimed once per run); False if a
        newer owner holds it. Sets :data:`FENCE` for the writes that follow in this task."""
        svc = self.sites[site]
        if self._fenced.get(site) != epoch:
            if not await asyncio.to_thread(claim, self.engine, svc.store.site, epoch,
                                           self.worker.id):
                return False
            self._fenced[site] = epoch
        FENCE.set((svc.store.site, epoch))
        return True

    def _on_run(self, site: str, epoch: int, after_seq: int) -> None:
        log.info("site %s: evaluating from stream seq %d (epoch %d)", site, after_seq, epoch)
        # Sites taken in one round are refreshed together: one read per batch of sites.
        self._to_refresh.add(site)
        if self._refreshing is None or self._refreshing.done():
            task = asyncio.get_running_loop().create_task(self._refresh())
            self._refreshing = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _refresh(self) -> None:
        while self._to_refresh:
            await asyncio.sleep(0)  # the rest of the round's runs join this refresh
            taken, self._to_refresh = self._to_refresh, set()
            units = [self.sites[s] for s in taken if s in self.sites]
            # The books, and what other nodes delivered (read under each site's lock).
            await refresh_books(units, outboxes=True)
            for svc in units:
                # A level its former owner recorded as due but died sending (not one still
                # in flight at a live gateway: those get a minute).
                svc.outbox.resend_undelivered(min_age_s=RESEND_AFTER_S)

    async def _sink(self, site: str, epoch: int, seq: int, outputs: Sequence[Any]) -> None:
        svc = self.sites.get(site)
        if svc is None:
            return
        late = [k for o in outputs if isinstance(o, LateEvents) for k in o.keys]
        applied_at = {k: t for o in outputs if isinstance(o, LateEvents) for k, t in o.applied}
        changes = [o for o in outputs if isinstance(o, CoverChange)]
        if not await self._fence(site, epoch):
            log.warning("site %s: a newer owner holds the fence; epoch %d writes nothing",
                        site, epoch)
            return
        try:
            await self._write(svc, site, epoch, late, applied_at, changes)
        except Fenced as e:  # paused past its lease: the new owner makes these again
            log.warning("%s", e)

    async def _write(self, svc: SiteUnit, site: str, epoch: int, late: list[str],
                     applied_at: dict[str, int], changes: list[CoverChange]) -> None:
        if late:
            await asyncio.to_thread(svc.store.mark_late, late, applied_at)
        if not changes:
            return
        async with svc.lock:
            if not self._holds(site, epoch):
                log.info("site %s: lease lost, %d changes left to the new owner",
                         site, len(changes))
                return
            applied, happened = await asyncio.to_thread(apply_as_owner, svc, changes)
        await svc.subscribers.dispatch(happened + settled_by(svc, applied))
        self.applied += len(applied)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
