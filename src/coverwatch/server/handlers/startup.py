"""Start-up: a site's unit rebuilt from the store, as after a restart.

The live state resumes from its newest checkpoint (server/livecheckpoint.py)
and takes the stored events after it; without one, every stored event is
replayed up to the saved horizon, with every applied version of the rules in
force at its moment. The engine is chunk-invariant, so either reproduces the
state of the uninterrupted run."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coverwatch.clock import wall_clock_us
from coverwatch.domain.alertbook import AlertBook
from coverwatch.domain.alerts import Alert
from coverwatch.domain.changes import diff_sites
from coverwatch.domain.site import Site
from coverwatch.domain.time import seconds_to_us
from coverwatch.engine import CoverChange
from coverwatch.formats.sitefile import SiteDocument, load_site_text_document
from coverwatch.notify.notifier import Notifier
from coverwatch.server.devices import DeviceWatch
from coverwatch.server.handlers.alerts import apply_cover_changes
from coverwatch.server.handlers.ingest import CommitQueue
from coverwatch.server.handlers.tick import HORIZON_KEY
from coverwatch.server.live import LiveCover
from coverwatch.server.livecheckpoint import resume
from coverwatch.server.policies import policy_from, sos_policy_from
from coverwatch.server.subscribers import subscribe_feed
from coverwatch.server.unit import SiteUnit
from coverwatch.settings import Settings
from coverwatch.storage import Store
from coverwatch.storage.startreads import SiteStart
from coverwatch.storage.versions import SiteVersion, load_versions, save_versions

__all__ = ["EVENTS_PER_READ", "Started", "add_events", "begin", "build", "finish"]

EVENTS_PER_READ = 50_000

log = logging.getLogger("coverwatch.server")
# Closed alerts a start holds, the newest (web/static/js/controlalerts.js shows 200).
HELD_ALERTS = 200


def _stored_alert(store: Store, alert_id: str) -> Alert | None:
    record = store.get_alert_record(alert_id)
    return None if record is None else Alert.from_record(record)


def build(settings: Settings, store: Store, doc: SiteDocument,
          clock: Callable[[], int] = wall_clock_us, notifier: Notifier | None = None,
          reads: SiteStart | None = None) -> SiteUnit:
    """Rebuild the live state from the store, as after a restart. ``reads``: the site's
    stored rows, read with many other sites' at once (storage/startreads.py); without
    them, each is read from the store."""
    started = begin(settings, store, doc, clock, notifier, reads)
    if started.after is not None:
        add_events(started, [])
    return finish(started)


@dataclass
class Started:
    """A site's start between :func:`begin` and :func:`finish`: the stored events after
    ``after`` (None: none, the workers evaluate) are to be added to ``unit.live`` first
    (:func:`add_events`), read for many sites at once or by :func:`build`."""

    unit: SiteUnit
    after: int | None
    now: int
    saved: str | None
    start_horizon: int
    versions: list[SiteVersion]
    stored_versions: list[SiteVersion]
    sites: list[Site]
    pending: list[tuple[SiteVersion, Site]]
    src: Store | SiteStart


def add_events(started: Started, rows: list[dict[str, Any]], complete: bool = False) -> None:
    """Add stored events after ``started.after`` in id order. Unless ``complete`` (rows are
    every one there is), a full read (:data:`EVENTS_PER_READ` rows) is followed by the next
    ones from the store, until one is not full."""
    live, store = started.unit.live, started.unit.store
    while True:
        if rows:
            live.add(rows)
            started.after = int(rows[-1]["id"])
        if complete or (rows and len(rows) < EVENTS_PER_READ):
            return
        assert started.after is not None
        rows = store.events_since(started.after, limit=EVENTS_PER_READ)
        complete = len(rows) < EVENTS_PER_READ


def begin(settings: Settings, store: Store, doc: SiteDocument,
          clock: Callable[[], int] = wall_clock_us, notifier: Notifier | None = None,
          reads: SiteStart | None = None) -> Started:
    """The first part of :func:`build`: up to the stored events to add."""
    now = clock()
    lateness = seconds_to_us(settings.lateness_s)
    src: Store | SiteStart = store if reads is None else reads
    saved = src.get_state(HORIZON_KEY)
    start_horizon = int(saved) if saved is not None else now - lateness
    # The rules in force at each moment: every applied version of the site.
    stored_versions = load_versions(src)
    versions = stored_versions or [SiteVersion(start_horizon, doc.source)]
    # Resume from the live checkpoint if there is one (then only the stored events
    # after it are added, and no older site version is parsed).
    resumed = resume(store, versions, reads) if saved is not None and settings.bus_url is None \
        else None
    if resumed is not None:
        live = resumed.live
        sites = [live.site]
        pending: list[tuple[SiteVersion, Site]] = []
    else:
        # Only their rules matter: an old version's plan image may be gone (the "<...>"
        # name skips the image check; the version in force is read from the file as usual).
        sites = [load_site_text_document(
            v.source, f"<stored version of {settings.site_path}>").site for v in versions]
        live = LiveCover(sites[0], lateness_us=lateness, start_horizon=start_horizon,
                         timeline=True)  # the dashboard's cover timeline
        pending = list(zip(versions[1:], sites[1:], strict=True))
    # Resumed, only what follows the checkpoint is evaluated: the book holds the alerts
    # not closed and the last HELD_ALERTS raised (the control room's history); older
    # closed ones are read by id when asked for, so none is raised twice. A replay from
    # the start re-derives every alert: all are read.
    held: int | None = None
    if resumed is None:
        records = src.load_alerts()
    else:
        records, held = src.load_held_alerts(HELD_ALERTS)
    book = AlertBook.from_records(records, policy_from(doc),
                                  archive=functools.partial(_stored_alert, store),
                                  held_since=held)
    unit = SiteUnit(settings, store, doc, live, book, clock=clock, notifier=notifier)
    unit.commits = CommitQueue()
    if resumed is not None:
        unit.last_checkpoint = live.horizon  # the next one is due a while from here
    subscribe_feed(unit.subscribers, unit.feed)
    from coverwatch.server.wiring import outbox_for  # it imports the handlers

    unit.outbox = outbox_for(unit)
    unit.outbox.load(reads, None if held is None else min(
        [held, *(a.lapse_start for a in book.alerts())]))
    unit.start_reads = reads  # the briefing loads from them too (bootstrap._prepare_site)
    unit.sos_policy = sos_policy_from(doc)
    book.policy_for = unit.policy_for
    unit.watch = DeviceWatch(lateness, seconds_to_us(settings.max_lateness_s))
    unit.watch.load(src.last_device_reports())
    return Started(unit, live.max_id if settings.bus_url is None else None, now, saved,
                   start_horizon, versions, stored_versions, sites, pending, src)


def finish(started: Started) -> SiteUnit:
    """The rest of :func:`build`, once the stored events are added."""
    unit, live, settings, store = started.unit, started.unit.live, started.unit.settings, \
        started.unit.store
    doc, now, saved, start_horizon = unit.doc, started.now, started.saved, started.start_horizon
    versions, sites, src = started.versions, started.sites, started.src
    changes: list[CoverChange] = []
    for version, site in started.pending:
        changes += live.advance_to(version.effective_us)
        changes += live.switch_site(site)
    if saved is not None:
        changes += live.advance_to(start_horizon)
    if settings.bus_url is not None:
        changes = []  # the workers raise cover alerts in distributed mode
    if settings.bus_url is not None and started.stored_versions and \
            doc.source != versions[-1].source:
        # Distributed: the stored versions rule (every node has its own copy of the
        # file); a change goes through `site apply`, which hands it to the owner.
        log.warning("%s differs from the rules in force at site %s: using the stored "
                    "version (apply changes with `coverwatch site apply`)",
                    settings.site_path, doc.site.id)
        unit.doc = doc = load_site_text_document(versions[-1].source, str(settings.site_path))
        unit.book.policy, unit.sos_policy = policy_from(doc), sos_policy_from(doc)
    if doc.source != versions[-1].source:
        # The file was edited while the server was down: in force from now on.
        changes += live.switch_site(doc.site)
        versions.append(SiteVersion(live.horizon, doc.source))
        store.audit_change("server", "site.changed-while-stopped", doc.site.id,
                           {"diff": diff_sites(sites[-1], doc.site).to_dict()})
    save_versions(store, versions, stored=src)
    unit.subscribers.publish_now(apply_cover_changes(unit, changes))
    # Hold the horizon for a while after a restart so clients can re-send
    # what they could not deliver while the server was down.
    unit.recover_until = now + seconds_to_us(settings.recovery_s) if saved is not None else 0
    return unit
