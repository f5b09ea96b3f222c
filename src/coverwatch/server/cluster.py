"""Distributed mode's start for one node: the bus hooks of every site, the alert
book kept in step with PostgreSQL, the bus outbox's note of each commit and this node's role
(a :class:`~coverwatch.server.clusterworker.ClusterWorker`, or a gateway's dead-man
watch). See docs/scale.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coverwatch.bus import BusNames, Checkpoints, EventLog, connect, open_bucket, watch_for_orphans
from coverwatch.clock import wall_clock_us
from coverwatch.formats.sitefile import load_site_text_document
from coverwatch.server.changefeed import ChangeFeed
from coverwatch.server.clusterworker import ClusterWorker, checkpoint_secret
from coverwatch.server.gateway import CLOSE_S, RESEND_AFTER_S, ROLES, BusHooks
from coverwatch.server.handlers.site import adopt_site
from coverwatch.server.handlers.sync import deadman_reports, refresh_book, refresh_books
from coverwatch.server.happenings import AlarmsStoredHere, Happening
from coverwatch.server.wiring import bus_hooks_for
from coverwatch.storage.busoutbox import note_group
from coverwatch.storage.versions import load_versions

if TYPE_CHECKING:
    from nats.aio.client import Client

    from coverwatch.server.unit import SiteUnit

__all__ = ["Distributed", "refresh_site", "start_bus"]

log = logging.getLogger("coverwatch.server")

RESEND_EVERY_S = 30.0
CHANGE_MARGIN_S = 30.0
FALLBACK_SCAN_S = 15.0  # the change scan behind LISTEN/NOTIFY
RELEASE_S = 1.5  # at shutdown, the longest wait for the leases' release past CLOSE_S


@dataclass
class Distributed:
    """What ``start_bus`` started; :meth:`close` stops it (worker first: it hands over)."""

    nc: Client
    hooks: dict[str, BusHooks]  # by site id
    worker: ClusterWorker | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def close(self) -> None:
        self.stop.set()  # the worker checkpoints and releases its sites, then ends
        with contextlib.suppress(Exception):  # bounded: SIGTERM stops a node in seconds
            await asyncio.wait(self.tasks, timeout=CLOSE_S)
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.worker is not None:
            # The leases' release, if it had begun, goes on (shielded): wait for it briefly,
            # so the next owner takes the sites at once rather than after they expire.
            released = self.worker.worker.released
            if released is not None and not released.done():
                await asyncio.wait({released}, timeout=RELEASE_S)
            await self.worker.close()
        with contextlib.suppress(Exception):
            await self.nc.close()


def refresh_site(svc: SiteUnit) -> list[Happening]:
    """Adopt the newest rule version another node applied (escalation, names, orders)."""
    versions = load_versions(svc.store)
    if not versions or versions[-1].source == svc.doc.source:
        return []
    return adopt_site(svc, load_site_text_document(versions[-1].source,
                                                   str(svc.settings.site_path)))


def _outbox_hook(store: Any, hooks: BusHooks
                 ) -> Callable[[Any, Sequence[tuple[int, str]], int], None]:
    def note(conn: Any, stored: Sequence[tuple[int, str]], earliest_us: int) -> None:
        note_group(conn, store.site, stored, earliest_us)
        # The gateway publishes this group's chunks as the relay would rebuild them.
        hooks.noted.append(list(stored))

    return note


def changed_sites(engine: Any, since_us: int) -> dict[str, tuple[int, ...]]:
    """For each site (store key) whose alerts or rule versions were written after
    ``since_us`` (writers' clocks), a signature of those writes (how many, the newest):
    one query for every site."""
    from sqlalchemy import func, literal, select, union_all

    from coverwatch.storage.tables import alerts, server_state
    from coverwatch.storage.versions import VERSIONS_KEY

    query = union_all(
        select(alerts.c.site, literal(0).label("part"), func.count().label("n"),
               func.max(alerts.c.updated_us).label("newest"))
        .where(alerts.c.updated_us > since_us).group_by(alerts.c.site),
        select(server_state.c.site, literal(1).label("part"), func.count().label("n"),
               func.max(server_state.c.updated_us).label("newest"))
        .where(server_state.c.key == VERSIONS_KEY, server_state.c.updated_us > since_us)
        .group_by(server_state.c.site))
    parts: dict[str, list[tuple[int, int, int]]] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            parts.setdefault(r.site, []).append((int(r.part), int(r.n), int(r.newest)))
    return {site: tuple(x for part in sorted(p) for x in part) for site, p in parts.items()}


async def _refresh_one(svc: SiteUnit) -> None:
    async with svc.lock:
        await asyncio.to_thread(refresh_book, svc)
        adopted = await asyncio.to_thread(refresh_site, svc)
    await svc.subscribers.dispatch(adopted)


async def _next_change(feed: ChangeFeed | None, stop: asyncio.Event,
                       timeout: float) -> str | None:
    """A site key notified within ``timeout`` (None: none, or stopping, or no feed)."""
    stopping = asyncio.ensure_future(stop.wait())
    waits: set[asyncio.Future[Any]] = {stopping}
    getting = None
    if feed is not None:
        getting = asyncio.ensure_future(feed.changed.get())
        waits.add(getting)
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    if getting is not None and getting.done() and not getting.cancelled():
        return getting.result()
    return None


async def _keep_books(sites: Mapping[str, SiteUnit], stop: asyncio.Event,
                      every_s: float, fallback_s: float = FALLBACK_SCAN_S, *,
                      seen: dict[str, tuple[int, ...]] | None = None,
                      since: int | None = None) -> None:
    """Keep every site's alert book and rule version in step with PostgreSQL.

    On PostgreSQL a :class:`ChangeFeed` LISTENs for the writes (a trigger NOTIFYs them), and
    the node refreshes the sites named; behind it, one change scan every ``fallback_s``
    and whenever the feed may have missed some (its connection dropped). Without a feed
    (not PostgreSQL, or its connection down) the scan runs every ``every_s``. A scan is
    one query for all the sites (idle, the node's transactions do not grow with them);
    each looks back ``CHANGE_MARGIN_S`` before the previous one, for writers whose clocks
    run behind and commits that land late, and a site is refreshed when its writes in that
    window differ from the last scan's (one more, or a newer one)."""
    by_key = {svc.store.site: svc for svc in sites.values()}
    engine = next(iter(sites.values())).store.engine
    feed = None
    if engine.dialect.name == "postgresql":
        feed = ChangeFeed(engine, asyncio.get_running_loop())
        feed.start()
    if since is None:  # start_bus refreshed them all
        since = wall_clock_us() - int(CHANGE_MARGIN_S * 1e6)
    seen = {} if seen is None else seen
    resent = scanned_at = time.monotonic()
    notified: set[str] = set()
    try:
        while not stop.is_set():
            try:
                keys, notified = notified, set()
                if feed is None or feed.lost() or time.monotonic() - scanned_at >= fallback_s:
                    scanned_at, scanned = time.monotonic(), wall_clock_us()
                    now_seen = await asyncio.to_thread(changed_sites, engine, since)
                    since = scanned - int(CHANGE_MARGIN_S * 1e6)
                    keys |= {k for k, sig in now_seen.items() if seen.get(k) != sig}
                    seen = now_seen
                for key in keys:
                    if key in by_key:
                        await _refresh_one(by_key[key])
                if time.monotonic() - resent >= RESEND_EVERY_S:
                    # A node that died sending (an SOS's gateway, a former owner) left levels
                    # due with nothing delivered: the owner sends them, once (only sites
                    # with an alert still live can have any).
                    resent = time.monotonic()
                    for svc in sites.values():
                        if svc.bus is not None and svc.bus.owns() and \
                                svc.book.needing_attention():
                            await asyncio.to_thread(svc.outbox.load)
                            svc.outbox.resend_undelivered(min_age_s=RESEND_AFTER_S)
            except Exception:  # PostgreSQL failing over: the next pass catches up
                log.exception("alert book refresh failed")
            listening = feed is not None and feed.connected.is_set()
            woke = await _next_change(feed if listening else None, stop,
                                      min(fallback_s, RESEND_EVERY_S) if listening else every_s)
            if woke is not None:
                notified.add(woke)
                await asyncio.sleep(0.05)  # a burst of writes: one refresh per site
                while feed is not None and not feed.changed.empty():
                    notified.add(feed.changed.get_nowait())
    finally:
        if feed is not None:
            await asyncio.to_thread(feed.stop)


async def start_bus(sites: Mapping[str, SiteUnit], *, book_every_s: float = 2.0) -> Distributed:
    """Connect to NATS and start this node's role (``settings.role``) for every site."""
    first = next(iter(sites.values()))
    settings = first.settings
    if settings.role not in ROLES:
        raise ValueError(f"role {settings.role!r}: expected one of {', '.join(ROLES)}")
    assert settings.bus_url is not None
    names = BusNames(settings.bus_prefix)
    nc = await connect(settings.bus_url, name=f"coverwatch-{settings.role}")
    event_log = EventLog(nc.jetstream(), names, replicas=settings.bus_replicas)
    await event_log.ensure()
    dist = Distributed(nc, {})
    checkpoints = Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints,
                                                replicas=settings.bus_replicas))
    try:
        secret: bytes | None = checkpoint_secret(first)
    except RuntimeError as e:  # the views stay empty; the workers refuse to start anyway
        log.warning("owners' states will not be shown here: %s", e)
        secret = None
    for site, svc in sites.items():
        hooks = bus_hooks_for(svc, event_log, settings.role, checkpoints=checkpoints,
                              secret=secret)
        dist.hooks[site] = svc.bus = hooks
        svc.subscribers.subscribe(AlarmsStoredHere, hooks.stored_here)
        # Every commit of events notes its group in the outbox, in the same transaction.
        svc.store.after_append = _outbox_hook(svc.store, hooks)
    # The change scan's first look, before the books are refreshed: what the starts just
    # wrote (every site's rule versions, a first time) is not taken for news from others.
    engine = first.store.engine
    since = wall_clock_us() - int(CHANGE_MARGIN_S * 1e6)
    seen = await asyncio.to_thread(changed_sites, engine, since)
    await refresh_books(list(sites.values()))  # one read per batch of sites, not per site
    dist.tasks.append(asyncio.create_task(
        _keep_books(sites, dist.stop, book_every_s, seen=seen, since=since),
        name="alert-books"))
    if settings.role in ("worker", "all"):
        dist.worker = ClusterWorker(sites, nc, names)
        for hooks in dist.hooks.values():
            hooks.worker = dist.worker
        await dist.worker.start()
        dist.tasks.append(asyncio.create_task(dist.worker.run(dist.stop), name="bus-worker"))
    else:
        from coverwatch.bus import WorkerSettings

        ws = WorkerSettings()
        orphaned, owned = deadman_reports(sites)
        dist.tasks.append(asyncio.create_task(watch_for_orphans(
            nc.jetstream(), names.leases, lambda: list(sites), lease_s=ws.lease_s,
            after_s=ws.deadman_s, on_orphan=orphaned, on_owned=owned, stop=dist.stop,
            partitions=settings.bus_partitions),
            name="dead-man"))
    log.info("distributed mode: %s for %d site(s) on bus %s", settings.role, len(sites),
             names.prefix)
    return dist
