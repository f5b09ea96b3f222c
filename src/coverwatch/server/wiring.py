"""Where a site's adapters are built: each is given narrow views of its unit (a
:class:`~coverwatch.server.ports.SiteView`, the store, the notifier) and the one
command door (:func:`coverwatch.server.handlers.alerts.execute`), never the unit.

Called by start-up (:func:`coverwatch.server.handlers.startup.build`), the app's
wiring (:mod:`coverwatch.bootstrap`) and distributed mode's start
(:mod:`coverwatch.server.cluster`)."""

from __future__ import annotations

import functools
from typing import Any

from coverwatch.bus import Checkpoints, EventLog
from coverwatch.server.briefing import Briefing
from coverwatch.server.gateway import BusHooks
from coverwatch.server.handlers.alerts import execute
from coverwatch.server.handlers.ingest import ingest
from coverwatch.server.outbox import Outbox
from coverwatch.server.ports import SiteView
from coverwatch.server.tours import TourWatch
from coverwatch.server.unit import SiteUnit

__all__ = ["briefing_for", "bus_hooks_for", "outbox_for", "site_view", "tours_for"]


def site_view(unit: SiteUnit) -> SiteView:
    """The unit as an adapter may see it."""
    return SiteView(
        site=lambda: unit.site, shown=lambda: unit.shown, clock=unit.clock, alerts=unit.book,
        feed=unit.feed, bus=lambda: unit.bus, execute=functools.partial(execute, unit),
        spawn=unit.spawn)


def outbox_for(unit: SiteUnit) -> Outbox:
    """The site's sender, subscribed to the happenings it acts on."""
    outbox = Outbox(site_view(unit), unit.store, unit.notifier)
    outbox.subscribe(unit.subscribers)
    return outbox


def briefing_for(unit: SiteUnit, reacknowledge_s: float) -> Briefing:
    """The site's rosters and orders, loaded from the store (blocking: run in a thread), or
    from what the start read for many sites at once (then forgotten)."""
    reads, unit.start_reads = unit.start_reads, None
    return Briefing.load(site_view(unit), unit.store, functools.partial(ingest, unit),
                         reacknowledge_s, reads)


def tours_for(unit: SiteUnit, step_s: float = 2.0) -> TourWatch:
    """The site's tour watch."""
    return TourWatch(site_view(unit), unit.store, step_s)


def bus_hooks_for(unit: SiteUnit, log: EventLog, role: str, *,
                  checkpoints: Checkpoints | None = None, secret: bytes | None = None,
                  **options: Any) -> BusHooks:
    """Distributed mode's hooks for the site."""
    return BusHooks(unit.site.id, lambda: unit.site, unit.store, unit.watch, unit.book,
                    unit.clock, log, role, checkpoints=checkpoints, secret=secret, **options)
