"""One site's unit: the state every handler and view works on.

A ``SiteUnit`` holds the site in force, the store, the live engine, the alert
book, the devices' watch and the lock that orders them; it does nothing by
itself. What changes it lives in :mod:`coverwatch.server.handlers` (ingest,
tick, alerts, site changes, start-up), which return happenings
(:mod:`coverwatch.server.happenings`) that the adapters subscribed in
:attr:`SiteUnit.subscribers` hear of.

The adapters are kept here only so routes can reach them (the outbox's
deliveries, the briefing's orders, the bus hooks' owner); each is typed, and
none is called by a handler to say what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coverwatch.clock import wall_clock_us
from coverwatch.domain.alertbook import AlertBook
from coverwatch.domain.alerts import DEVICE_ALARM_KINDS, Alert, EscalationPolicy
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S
from coverwatch.formats.sitefile import SiteDocument
from coverwatch.server.devices import DeviceWatch
from coverwatch.server.feed import Feed
from coverwatch.server.live import LiveCover
from coverwatch.server.subscribers import Subscribers
from coverwatch.server.watchdog import Health
from coverwatch.settings import Settings
from coverwatch.storage import Store

if TYPE_CHECKING:  # the adapters, for their types only (they import this module)
    from coverwatch.evidence.witness import Witnesses
    from coverwatch.notify.notifier import Notifier
    from coverwatch.server.briefing import Briefing
    from coverwatch.server.gateway import BusHooks
    from coverwatch.server.handlers.ingest import CommitQueue
    from coverwatch.server.outbox import Outbox
    from coverwatch.server.tours import TourWatch
    from coverwatch.storage.startreads import SiteStart

__all__ = ["IngestResult", "SiteUnit"]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest call did: accepted counts new and re-sent events."""

    accepted: int
    duplicates: int
    late: int


@dataclass
class SiteUnit:
    """One site's state; built by :func:`coverwatch.server.handlers.startup.build`."""

    settings: Settings
    store: Store
    doc: SiteDocument
    live: LiveCover
    book: AlertBook
    feed: Feed = field(default_factory=Feed)
    clock: Callable[[], int] = wall_clock_us
    # Who hears of what the handlers did (the feed, the outbox, the bus hooks, the briefing).
    subscribers: Subscribers = field(default_factory=Subscribers)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Each device's newest report, upload delays and the watermark.
    watch: DeviceWatch = field(default_factory=lambda: DeviceWatch(2_000_000, 10_000_000))
    sos_policy: EscalationPolicy = field(default_factory=lambda: EscalationPolicy(()))
    # Ticker and store health, for /readyz and the watchdog.
    health: Health = field(default_factory=Health)
    # After a restart the horizon holds until then, so clients can re-send what they
    # could not deliver while the server was down.
    recover_until: int = 0
    last_saved_horizon: int = 0
    last_checkpoint: int = 0  # the live horizon at the last saved live checkpoint
    delays_logged: int = 0
    # Counters for /metrics.
    ingested: dict[str, int] = field(default_factory=dict)
    late_total: int = 0
    duplicates_total: int = 0
    mqtt_connected: bool = False
    mqtt_rejected: int = 0
    dead_letters: int = 0  # messages set aside since start (server.deadletters)
    # The adapters (set by the wiring point).
    notifier: Notifier | None = None
    outbox: Outbox = field(init=False)
    briefing: Briefing | None = None
    tours: TourWatch | None = None
    bus: BusHooks | None = None  # distributed mode (docs/scale.md)
    witnesses: Witnesses | None = None  # of the signed tree heads (anchoring)
    # What the start read for many sites at once, until the briefing has loaded from it.
    start_reads: SiteStart | None = None
    commits: CommitQueue = field(init=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def site(self) -> Site:
        return self.doc.site

    @property
    def replica(self) -> LiveCover | None:
        """Distributed mode: the site's cover as its owner last checkpointed it (refreshed
        by BusHooks.refresh_replica), shown where this node does not evaluate."""
        return None if self.bus is None else self.bus.replica

    @property
    def evaluates(self) -> bool:
        """Whether this process runs the live engine (in distributed mode the workers do)."""
        return self.settings.bus_url is None

    @property
    def shown(self) -> LiveCover:
        """The cover the views show: this node's engine, or its owner's latest state."""
        return self.live if self.evaluates or self.replica is None else self.replica

    def view_lag_s(self) -> float | None:
        """How far the shown cover trails the clock (None: nothing to show yet)."""
        if self.evaluates:
            return self.engine_lag_s()
        if self.replica is None:
            return None
        return max(0.0, (self.clock() - int(self.replica.horizon)) / US_PER_S)

    def engine_lag_s(self) -> float:
        """How far the horizon trails the wall clock (includes the allowed lateness)."""
        if not self.evaluates:
            return 0.0  # the workers' lag is the bus's (docs/scale.md)
        return max(0.0, (self.clock() - self.live.horizon) / US_PER_S)

    def policy_for(self, alert: Alert) -> EscalationPolicy:
        """Device alarms escalate by the site's SOS policy, the rest by its cover policy."""
        return self.sos_policy if alert.kind in DEVICE_ALARM_KINDS else self.book.policy

    def need(self, post: str, rule: str) -> int:
        """How many officers the rule needs (0 for a rule no longer in the site)."""
        for p, r in self.site.rules():
            if p.id == post and r.id == rule:
                return r.need
        return 0

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> None:
        """Run work in the background, keeping a reference until it ends."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
