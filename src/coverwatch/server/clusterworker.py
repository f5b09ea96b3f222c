"""Distributed mode, the worker's side: evaluate owned sites from the bus, alerts to PostgreSQL.

A :class:`ClusterWorker` runs one :class:`coverwatch.bus.Worker` over every
site of the deployment (the workers of all nodes share them out by lease), with
the live cover engine as its evaluator (``server/buscover.py``). Its output sink
applies cover changes exactly as the single process does
(``Services._apply_changes``: raise and resolve alerts, each recorded and
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
from coverwatch.domain.alerts import Alert, AlertState, alert_id_for
from coverwatch.domain.time import seconds_to_us
from coverwatch.engine import CoverChange
from coverwatch.server.buscover import BusCover, LateEvents
from coverwatch.server.gateway import RESEND_AFTER_S, deadman_reports, refresh_book, take_in

if TYPE_CHECKING:
    from nats.aio.client import Client

    from coverwatch.server.services import Services

__all__ = ["ClusterWorker", "checkpoint_secret"]

log = logging.getLogger("coverwatch.server")

_LIVE = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


def checkpoint_secret(svc: Services) -> bytes:
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


class ClusterWorker:
    """This node's evaluator worker; see the module docstring."""

    def __init__(self, sites: Mapping[str, Services], nc: Client, names: BusNames,
                 settings: WorkerSettings | None = None) -> None:
        self.sites = sites
        svc = next(iter(sites.values()))
        self.secret = checkpoint_secret(svc)
        self.applied = 0  # cover changes applied (for logs and tests)
        self._tasks: set[asyncio.Task[Any]] = set()

        orphaned, owned = deadman_reports(sites)
        self.worker = Worker(
            nc, sites=lambda: list(sites), factory=self._evaluator, names=names,
            sink=self._sink, settings=settings or WorkerSettings(
                lateness_s=svc.settings.lateness_s),
            on_orphan=orphaned, on_owned=owned, on_run=self._on_run,
            lease_url=svc.settings.bus_url,
        )
        self._started = False

    async def start(self) -> None:
        await self.worker.start()
        self._started = True

    async def run(self, stop: asyncio.Event) -> None:
        """Take part until ``stop``; then checkpoint and hand every site over."""
        await self.worker.run(stop)

    def owns(self, site: str) -> bool:
        return self._started and site in self.worker.runs and self.worker.leases.owns(site)

    def _holds(self, site: str, epoch: int) -> bool:
        # Fencing: a run of an older epoch (lease lost and taken again) acts no more.
        return self.owns(site) and self.worker.leases.epochs.get(site) == epoch

    def _evaluator(self, site: str, state: bytes | None) -> SiteEvaluator:
        svc = self.sites.get(site)
        if svc is None:
            raise ValueError(f"site {site!r} is not served by this node")
        return BusCover(svc.site, secret=self.secret,
                        lateness_us=seconds_to_us(svc.settings.lateness_s), state=state)

    def _on_run(self, site: str, epoch: int, after_seq: int) -> None:
        log.info("site %s: evaluating from stream seq %d (epoch %d)", site, after_seq, epoch)
        task = asyncio.get_running_loop().create_task(self._refresh(site))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, site: str) -> None:
        svc = self.sites[site]
        async with svc.lock:
            await asyncio.to_thread(refresh_book, svc)
            await asyncio.to_thread(svc.outbox.load)  # what other nodes delivered
        # A level its former owner recorded as due but died sending (not one still in
        # flight at a live gateway: those get a minute).
        svc.outbox.resend_undelivered(min_age_s=RESEND_AFTER_S)

    async def _sink(self, site: str, epoch: int, seq: int, outputs: Sequence[Any]) -> None:
        svc = self.sites.get(site)
        if svc is None:
            return
        late = [k for o in outputs if isinstance(o, LateEvents) for k in o.keys]
        applied_at = {k: t for o in outputs if isinstance(o, LateEvents) for k, t in o.applied}
        changes = [o for o in outputs if isinstance(o, CoverChange)]
        if late:
            await asyncio.to_thread(svc.store.mark_late, late, applied_at)
        if not changes:
            return
        async with svc.lock:
            if not self._holds(site, epoch):
                log.info("site %s: lease lost, %d changes left to the new owner",
                         site, len(changes))
                return
            applied = await asyncio.to_thread(self._apply, svc, changes)
        for ch in applied:
            if ch.kind == "lapse-ended":
                ended = svc.book.find(ch.post, ch.rule, ch.lapse_start)
                if ended is not None:
                    await svc.outbox.settle(ended)
        self.applied += len(applied)

    @staticmethod
    def _apply(svc: Services, changes: list[CoverChange]) -> list[CoverChange]:
        """Changes, less those the store already shows, applied as the single process does."""
        out = []
        for ch in changes:
            if ch.kind in ("alert", "lapse-ended"):
                rec = svc.store.get_alert_record(
                    alert_id_for("lapse", ch.post, ch.rule, ch.lapse_start))
                if rec is not None:
                    stored = Alert.from_record(rec)
                    take_in(svc, stored)
                    if ch.kind == "lapse-ended" and stored.state not in _LIVE:
                        continue  # resolved before the takeover: once is enough
            out.append(ch)
        svc._apply_changes(out)
        return out

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
