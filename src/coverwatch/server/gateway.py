"""Distributed mode (``coverwatch serve --bus …``): the gateway's side.

Every role keeps today's ingest path (:mod:`coverwatch.server.handlers.ingest`: one commit
with the unique event key). :class:`BusHooks` adds what the bus needs:

- after the commit, the rows *that commit stored* are published to the site's
  subject, one message per chunk of the commit group (``Nats-Msg-Id``
  ``g:<site>:<first id>:<chunk>``, the ids the bus outbox noted), and the request is
  answered only after the PubAcks. A re-sent row is not published again: the commit
  that stored it noted its group in the bus outbox, and its own gateway's message, or
  else the owner's relay (which rebuilds the same chunks, so one copy is dropped),
  carries it. A failed publish fails the request (503), so the client retries.
- which escalation steps this node sends: a device alarm's (sos, fall)
  immediate levels from the gateway that stored it, at once; every other step
  from the worker that holds the site's lease (it also sends an immediate
  level that no gateway recorded within ``ORPHAN_STEP_S``: its gateway died).
  A step whose level the store already records as due was sent by some node
  before (a takeover, a restart) and is never sent again.

The gateway does not evaluate cover (``SiteUnit.evaluates`` is False): the
workers do (:mod:`coverwatch.server.clusterworker`). Every node keeps its alert
book in step with PostgreSQL, the system of record for alerts, and runs the
dead-man check (a worker node through its ``Worker``):
:mod:`coverwatch.server.handlers.sync`. See docs/scale.md.

The hooks hold no unit: they are given the site's id, its store, the devices'
watch and a view of its alert book (built by :mod:`coverwatch.server.wiring`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coverwatch.bus import Checkpoints, EventLog
from coverwatch.bus.log import chunk_msg_id
from coverwatch.domain.alertbook import AlertsRead
from coverwatch.domain.alerts import DEVICE_ALARM_KINDS, Escalation
from coverwatch.domain.site import Site
from coverwatch.errors import BusUnavailable
from coverwatch.server.devices import DeviceWatch
from coverwatch.server.happenings import AlarmsStoredHere
from coverwatch.storage import Store, row_key
from coverwatch.storage.busoutbox import FENCE, chunks

if TYPE_CHECKING:
    from coverwatch.server.clusterworker import ClusterWorker
    from coverwatch.server.live import LiveCover

__all__ = [
    "FAULT_ENV",
    "RESEND_AFTER_S",
    "ROLES",
    "BusHooks",
    "wire",
]

log = logging.getLogger("coverwatch.server")

ROLES = ("gateway", "worker", "all")
ORPHAN_STEP_S = 10.0
CLOSE_S = 3.0  # the longest a node's shutdown waits for its bus tasks (hand-over included)
# Columns the evaluator does not need stay in PostgreSQL (the raw payload may be large).
# received_us goes with the event: the owner's device watermark needs it, and the evaluator
# shows how late a late event arrived. id, site, key: a stored row republished from the outbox.
_NOT_PUBLISHED = frozenset({"raw", "_request", "late", "applied_us", "id", "site", "key"})
# Tests only: "exit-before-publish" makes a gateway die between its commit and publish,
# "exit-after-first-chunk" after the PubAck of a group's first message.
FAULT_ENV = "COVERWATCH_TEST_FAULT"


def wire(row: Mapping[str, Any]) -> dict[str, Any]:
    """An event row as published (stored rows too: the bus outbox republishes them)."""
    return {k: v for k, v in row.items() if k not in _NOT_PUBLISHED}


@dataclass
class BusHooks:
    """``SiteUnit.bus``: publish committed rows; choose the escalation steps to send."""

    site_id: str
    site: Callable[[], Site]  # the rules in force (the owner's state is read against them)
    store: Store
    watch: DeviceWatch  # the devices' last reports, merged from the store on the owner
    alerts: AlertsRead
    clock: Callable[[], int]
    log: EventLog
    role: str
    timeout_s: float = 5.0
    chunk: int = 1000
    # The worker side (None on a gateway): whether this node holds a site's lease now.
    worker: ClusterWorker | None = None
    published: int = 0
    # Device alarms this node stored (it sends their immediate levels).
    raised_here: set[str] = field(default_factory=set)
    # The owner's checkpoints and the key they are signed with: this node's views.
    checkpoints: Checkpoints | None = None
    secret: bytes | None = None
    replica_every_s: float = 1.0
    _replica_at: float = -1e9
    _replica_rev: int = -1
    _silent_at: int = -(1 << 62)
    # The site's owner (worker id) by its latest checkpoint: /metrics and the board.
    owner: str | None = None
    # The site's cover as its owner last checkpointed it (see refresh_replica).
    replica: LiveCover | None = None
    evaluates: bool = False  # bus mode: the workers evaluate (SiteUnit.evaluates)
    # The commit groups the bus outbox noted since the last publish ((id, key) pairs), by
    # the store's thread inside each commit (server/cluster.py); a rolled-back one too.
    noted: list[list[tuple[int, str]]] = field(default_factory=list)
    fault: str = field(default_factory=lambda: os.environ.get(FAULT_ENV, ""))

    def stored_here(self, h: AlarmsStoredHere) -> None:
        """This gateway stored these device alarms: it sends their first levels."""
        self.raised_here.update(h.alert_ids)

    async def refresh_replica(self) -> None:
        """Show the site's cover as its owner last checkpointed it (at most a second old).

        The owner's engine runs in its own thread and process; its signed checkpoint
        is a consistent copy, so every node's views (cover, officers, plan, the
        board) show the owner's state, with its horizon, never a guess."""
        if self.checkpoints is None or self.secret is None or self.evaluates:
            return
        now = time.monotonic()
        if now - self._replica_at < self.replica_every_s:
            return
        self._replica_at = now
        try:
            # The owner has its run's latest checkpoint in memory: a thousand owned sites
            # read no KV key a second each (they timed out, and took the event loop).
            cp = self.worker.checkpoint_of(self.site_id) if self.worker is not None else None
            cp = cp if cp is not None else await self.checkpoints.load(self.site_id)
        except Exception as e:  # NATS away: the views keep the last copy and its age
            log.warning("site %s: reading the owner's state failed: %s", self.site_id, e)
            return
        self.owner = None if cp is None else cp.owner
        if cp is None or cp.state is None or cp.revision == self._replica_rev:
            return
        from coverwatch.server.buscover import BusCover, StateRejected

        try:
            cover = await asyncio.to_thread(BusCover, self.site(), secret=self.secret,
                                            state=cp.state)
        except StateRejected as e:
            log.warning("site %s: owner's state not shown: %s", self.site_id, e)
            return
        self.replica, self._replica_rev = cover.live, cp.revision

    async def publish(self, rows: Sequence[Mapping[str, Any]], ids: Sequence[int] = (),
                      stored_rows: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Publish what this commit stored (``ids``; ``rows`` are the group's rows, new and
        re-sent; ``stored_rows`` the stored ones with their ``"id"``, as the store returned
        them) and wait for every PubAck; BusUnavailable if not.

        Each commit group the outbox noted goes as its chunks (:func:`chunks`), one message
        each, under the message ids the owner's relay would rebuild. Their group stays in
        the bus outbox whatever the PubAcks say: the site's owner forgets it once it has
        evaluated every event of it (and republishes what it never saw), see
        :mod:`coverwatch.storage.busoutbox`. Without a noted group (no outbox hook), every
        row goes on its own under its key, as before chunks."""
        noted, self.noted = self.noted, []
        if not rows:
            return
        if self.fault == "exit-before-publish":
            os._exit(70)  # tests only (FAULT_ENV): dead between the commit and the publish
        if self.fault == "acked-not-stored":
            # Tests only: every PubAck came, yet the stream lost the messages (a leader
            # that acknowledged and lost its leadership before they were replicated).
            self.published += len(ids)
            return
        stored = set(ids)
        # A group rolled back (its rows retried in another commit) stored none of ``ids``.
        groups = [sorted(g) for g in noted if g and all(i in stored for i, _ in g)]
        messages: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
        if sum(len(g) for g in groups) == len(stored):
            if stored_rows is not None:  # by id: no key computed again per row
                by_id = {int(r["id"]): r for r in stored_rows}
            else:
                by_key: dict[str, Mapping[str, Any]] = {}
                for r in rows:  # a key's first row is the one stored
                    by_key.setdefault(row_key(r), r)
                by_id = {i: by_key[k] for g in groups for i, k in g}
            for g in groups:
                key_of = dict(g)
                messages += [(chunk_msg_id(self.site_id, g[0][0], n),
                              [(key_of[i], wire(by_id[i])) for i in part])
                             for n, part in enumerate(chunks([i for i, _ in g]))]
        try:
            if messages and self.fault == "exit-after-first-chunk":
                await self.log.publish_events(self.site_id, messages[0][1], messages[0][0])
                os._exit(70)  # tests only (FAULT_ENV): dead between two chunks' PubAcks
            if messages or not stored:
                await asyncio.gather(*(
                    self.log.publish_events(self.site_id, events, msg_id,
                                            timeout=self.timeout_s)
                    for msg_id, events in messages))
                count = sum(len(events) for _, events in messages)
            else:  # no outbox hook: every row on its own, under its key
                singles = [(row_key(r), wire(r)) for r in rows]
                # In chunks: every PubAck of one large batch would not come in the timeout.
                for i in range(0, len(singles), self.chunk):
                    await self.log.publish(self.site_id, singles[i : i + self.chunk],
                                           timeout=self.timeout_s)
                count = len(singles)
        except Exception as e:
            log.warning("publishing %d events failed: %s", len(ids), e)
            raise BusUnavailable() from e
        self.published += count

    async def publish_site(self, source: str, effective_us: int) -> None:
        """Hand new rules to the site's owner: in force from ``effective_us`` (event time)."""
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        try:
            await self.log.publish_control(
                self.site_id, f"site:{digest}:{effective_us}",
                {"site_source": source, "effective_us": effective_us}, timeout=self.timeout_s)
        except Exception as e:
            log.warning("publishing the site change failed: %s", e)
            raise BusUnavailable() from e

    def owns(self) -> bool:
        """Whether this node holds the site's lease now."""
        return self.worker is not None and self.worker.owns(self.site_id)

    async def silent_check_due(self, now_us: int) -> bool:
        """On the site's owner, once a second: bring the devices' last reports (stored by
        whichever gateway took them) and the owner's cover up to date for the check of
        silent devices. False elsewhere: one node raises them."""
        if not self.owns() or now_us - self._silent_at < 1_000_000:
            return False
        self._silent_at = now_us
        await self.refresh_replica()
        if self.replica is None:
            return False  # no cover to say who is on duty yet
        if self.worker is not None:  # every owned site's in one query a second
            reports = await self.worker.device_reports(self.store.site, now_us)
        else:
            reports = await asyncio.to_thread(self.store.last_device_reports)
        self.watch.merge(reports)
        return True

    def _mine(self, step: Escalation) -> bool:
        immediate = step.kind in DEVICE_ALARM_KINDS and step.due_at <= step.alert_at
        if immediate and step.alert_id in self.raised_here:
            return True
        owner = self.owns()
        if immediate:  # its gateway's to send, unless that gateway died before it could
            return owner and self.clock() - step.alert_at > ORPHAN_STEP_S * 1e6
        return owner

    async def escalating(self, steps: Sequence[Escalation]
                         ) -> tuple[list[Escalation], list[Escalation]]:
        """The steps this node sends (its own kind, and not recorded as due by anyone
        yet), and those another node sends (the escalate handler marks them due again
        here, for when this node owns them)."""
        mine = [s for s in steps if self._mine(s)]
        FENCE.set(None)  # this task's writes are fenced only for the owner's steps below
        # The owner's steps: recorded due and delivered only while its epoch holds.
        owners = self.worker is not None and any(s.alert_id not in self.raised_here
                                                 for s in mine)
        if owners and not await self.worker.fence_current(self.site_id):  # type: ignore[union-attr]
            mine = [s for s in mine if s.alert_id in self.raised_here]
        others = [s for s in steps if not self._mine(s) and s.alert_id in self.alerts]
        if not mine:
            return [], others
        store = self.store

        def recorded() -> dict[str, int]:
            out = {}
            for alert_id in {s.alert_id for s in mine}:
                rec = store.get_alert_record(alert_id)
                out[alert_id] = -1 if rec is None else int(rec.get("escalated_level", -1))
            return out

        levels = await asyncio.to_thread(recorded)
        return [s for s in mine if s.level > levels[s.alert_id]], others


RESEND_AFTER_S = 60.0  # longer than a notifier's attempts (timeout x (1 + retries))
