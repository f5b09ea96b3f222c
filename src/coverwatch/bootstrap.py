"""The one wiring point: build the store, and for each site of the deployment its
live engine, notifier and background tasks, and the FastAPI app that serves them
(:func:`create_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from coverwatch.api.idempotency import Replies
from coverwatch.api.routes import router
from coverwatch.clock import wall_clock_us
from coverwatch.errors import Problem, SiteFileError
from coverwatch.formats.sitefile import SiteDocument, load_site_document
from coverwatch.http.access import LoginLimiter
from coverwatch.http.limits import RequestLimits, SiteRoutes
from coverwatch.http.problems import install as install_problems
from coverwatch.http.proxyscheme import ForwardedProto
from coverwatch.server.handlers.startup import (
    EVENTS_PER_READ,
    Started,
    add_events,
    begin,
    finish,
)
from coverwatch.server.handlers.tick import quiet_tick, tick, tick_every
from coverwatch.server.unit import SiteUnit
from coverwatch.server.upkeep import Upkeep
from coverwatch.settings import Settings
from coverwatch.storage import Store, open_store
from coverwatch.storage.sites import DEPLOYMENT, audit_each, keys_for_sites, site_store
from coverwatch.storage.startreads import BATCH as START_BATCH
from coverwatch.storage.startreads import events_after, read_starts

if TYPE_CHECKING:
    from coverwatch.notify.notifier import Notifier

__all__ = ["create_app"]

log = logging.getLogger("coverwatch.server")

# A background task that ignores its cancellation (a broker disconnect that never
# completes) must not keep the server from stopping.
_STOP_WAIT_S = 5.0


async def _stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the background tasks and wait for them, but not forever."""
    for t in tasks:
        t.cancel()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=_STOP_WAIT_S)
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            log.warning("background task %s ended with %r", t.get_name(), t.exception())
    for t in pending:
        log.warning("background task %s did not stop within %.0f s; left behind",
                    t.get_name(), _STOP_WAIT_S)


def _own_pool() -> ThreadPoolExecutor:
    """The app's default thread pool (``asyncio.to_thread``), its own so that a shutdown
    can drop what is queued there (:func:`_drop_queued_work`)."""
    pool = ThreadPoolExecutor(thread_name_prefix="coverwatch")
    asyncio.get_running_loop().set_default_executor(pool)
    return pool


def _drop_queued_work(pool: ThreadPoolExecutor) -> None:
    """Forget the blocking calls still queued in the app's pool (a thousand sites'
    background reads, say): their tasks are cancelled, and the interpreter would otherwise
    run every one of them before it exits, which kept a stopped node alive for minutes.
    Calls already running finish; whatever runs after gets a fresh pool."""
    pool.shutdown(wait=False, cancel_futures=True)
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())


def _notifier(settings: Settings, store: Store, doc: SiteDocument) -> Notifier:
    from coverwatch.notify.notifier import Notifier
    from coverwatch.server.outbox import people_resolver
    from coverwatch.server.pools import in_alarm, in_notify

    return Notifier(
        people_resolver(store), webhook_secret=settings.webhook_secret,
        site=doc.site, timezone=doc.site.timezone,
        timeout_s=settings.notify_timeout_s, retries=settings.notify_retries,
        offload=in_notify,  # their own pool: a slow address never takes a store thread
        offload_alarms=in_alarm,  # an SOS never waits behind lapse notices
    )


async def _build_sites(settings: Settings, store: Store, docs: list[SiteDocument],
                       clock: Callable[[], int]) -> dict[str, SiteUnit]:
    """Every site's unit, rebuilt from the store. Their rows are read a batch of sites at a
    time, one transaction each (storage/startreads.py), their stored events after their
    checkpoints in one query, and a batch's ``site.loaded`` entries appended in one
    transaction: a start of many sites costs transactions per batch, not per site."""
    from coverwatch.server.alertviews import where_text

    keys = await asyncio.to_thread(keys_for_sites, store, [d.site.id for d in docs])
    sites: dict[str, SiteUnit] = {}
    todo = list(zip(settings.site_paths, docs, keys, strict=True))
    for i in range(0, len(todo), START_BATCH):
        batch = todo[i : i + START_BATCH]
        reads = await asyncio.to_thread(read_starts, store.engine, [k for _, _, k in batch])
        started: list[Started] = []
        for path, doc, key in batch:
            one = replace(settings, site_path=path, more_sites=())
            own = site_store(store, key)
            started.append(await asyncio.to_thread(
                begin, one, own, doc, clock, _notifier(one, own, doc), reads[key]))
        after = {s.unit.store.site: s.after for s in started if s.after is not None}
        rows, complete = await asyncio.to_thread(events_after, store.engine, after,
                                                 EVENTS_PER_READ)
        loaded = []
        for s in started:
            if s.after is not None:
                await asyncio.to_thread(add_events, s, rows[s.unit.store.site], True)
                if not complete:  # a site may have more than the batch's read gave
                    await asyncio.to_thread(add_events, s, [])
            svc = await asyncio.to_thread(finish, s)
            if svc.notifier is not None:
                svc.notifier.where_of = functools.partial(_where, svc, where_text)
            sites[svc.site.id] = svc
            loaded.append((svc.store, "server", "site.loaded", svc.site.id,
                           {"path": str(svc.settings.site_path)}))
        await asyncio.to_thread(audit_each, loaded)
    return sites


def _where(svc: SiteUnit, where_text: Callable[[SiteUnit, str], str | None], step: Any
           ) -> str | None:
    return where_text(svc, step.alert_id)  # SOS: where, in words


async def _prepare_site(svc: SiteUnit) -> None:
    """One site's briefing and tours, and its notification targets checked."""
    from coverwatch.server.wiring import briefing_for, tours_for

    settings = svc.settings
    svc.briefing = await asyncio.to_thread(briefing_for, svc, settings.reacknowledge_within_s)
    svc.briefing.subscribe(svc.subscribers)
    svc.tours = tours_for(svc)
    await svc.outbox.check_targets()  # a target that reaches nobody: a system alert now
    if svc.bus is None:  # the server stopped while sending: those levels go out now
        svc.outbox.resend_undelivered()


def _start_site(svc: SiteUnit, anchorings: list[Any], upkeep: Upkeep
                ) -> list[asyncio.Task[Any]]:
    """One site's periodic steps (ticker, briefing, watchdog, tours: jobs of the process's
    one ``upkeep``) and background tasks (inputs, reports); its audit chain's anchoring
    joins ``anchorings`` (one task anchors every site's, in turn)."""
    from coverwatch.server.briefing import log as briefing_log
    from coverwatch.server.tours import log as tours_log
    from coverwatch.server.watchdog import watch_once

    assert svc.briefing is not None and svc.tours is not None  # _prepare_site
    settings = svc.settings
    site = svc.site.id
    # The cadences of the tasks they replace: each due again its interval after a step.
    # A site with nothing due is only asked (quiet_tick, Briefing.idle), not stepped.
    upkeep.every(f"ticker:{site}", functools.partial(tick_every, svc),
                 functools.partial(tick, svc), failed="tick failed",
                 quiet=functools.partial(quiet_tick, svc))
    briefing, tours = svc.briefing, svc.tours
    upkeep.every(f"briefing:{site}", lambda: briefing.step_s, briefing.step,
                 failed="briefing step failed", logger=briefing_log, quiet=briefing.idle)
    upkeep.every(f"watchdog:{site}", settings.watch_s, functools.partial(watch_once, svc),
                 first_s=settings.watch_s, failed="watchdog round failed")
    upkeep.every(f"tours:{site}", lambda: tours.step_s, tours.step,
                 failed="tour step failed", logger=tours_log, quiet=tours.idle)
    tasks = [asyncio.create_task(asyncio.to_thread(svc.outbox.notifier.warm_up),
                                 name=f"warm-up:{site}")]
    if settings.anchor_every_s > 0:
        from coverwatch.evidence.service import Anchoring, witnesses_for
        from coverwatch.server.watchdog import system_alert

        svc.witnesses = witnesses_for(svc.store, settings)
        anchorings.append(Anchoring(svc.store, settings, site, witnesses=svc.witnesses,
                                    on_refused=system_alert(svc, "audit-unsealed")))
    if settings.purge_every_s > 0:
        from coverwatch.evidence.retention import run_purge

        tasks.append(asyncio.create_task(run_purge(svc.store, settings.purge_every_s),
                                         name=f"retention:{site}"))
    if settings.daily_report_at and settings.daily_report_to:
        from coverwatch.reports.schedule import DailyMailer, parse_at, run_daily_reports

        mailer = DailyMailer(svc.store, svc.outbox.notifier, lambda: svc.site, svc.doc.source,
                             parse_at(settings.daily_report_at), tuple(settings.daily_report_to),
                             svc.clock, settings.public_url)

        tasks.append(asyncio.create_task(run_daily_reports(mailer), name=f"daily-report:{site}"))
    if settings.mqtt_url:
        from coverwatch.server.mqtt import run_mqtt

        tasks.append(asyncio.create_task(run_mqtt(svc, settings.mqtt_url), name=f"mqtt:{site}"))
    if settings.mqtt_url and settings.owntracks_mqtt:
        from coverwatch.server.owntracks import run_owntracks_mqtt

        tasks.append(asyncio.create_task(
            run_owntracks_mqtt(svc, settings.mqtt_url, settings.owntracks_mqtt),
            name=f"owntracks:{site}"))
    return tasks


def create_app(settings: Settings, *, clock: Callable[[], int] = wall_clock_us) -> FastAPI:
    """The server app. Background tasks (ticker, MQTT) run for the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        pool = _own_pool()
        store = open_store(settings.db_url, settings.data_dir)
        docs = [load_site_document(p) for p in settings.site_paths]
        ids = [d.site.id for d in docs]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            paths = [str(p) for p, i in zip(settings.site_paths, ids, strict=True) if i == dup]
            raise SiteFileError([Problem(paths[1], None, None, "site.id",
                                         f"{dup!r} is also the id of {paths[0]}")])
        sites = await _build_sites(settings, store, docs, clock)
        bus = None
        if settings.bus_url:  # distributed mode (docs/scale.md): before any task escalates
            from coverwatch.server.cluster import start_bus

            bus = await start_bus(sites)
        from coverwatch.server.watchdog import run_heartbeat

        # One heartbeat for the deployment: withheld while any site is unhealthy.
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(run_heartbeat(list(sites.values())), name="heartbeat")]
        # Every site prepared before any site's tasks start: site by site, each start
        # competed with the ticks of every site started before it (quadratic in sites).
        for svc in sites.values():
            await _prepare_site(svc)
        anchorings: list[Any] = []
        upkeep = Upkeep()  # one task steps every site's ticker, briefing, tours, watchdog
        for svc in sites.values():
            tasks += _start_site(svc, anchorings, upkeep)
        tasks.append(asyncio.create_task(upkeep.run(), name="upkeep"))
        app.state.sites = sites
        app.state.site_unit = next(iter(sites.values()))  # the first: deployment-wide reads
        # Logins, users and roles: one site's own chain, or with several the deployment's.
        app.state.deployment_store = (site_store(store, DEPLOYMENT) if len(sites) > 1
                                      else app.state.site_unit.store)
        if len(sites) > 1 and settings.anchor_every_s > 0:
            from coverwatch.evidence.service import Anchoring, witnesses_for

            first = app.state.site_unit
            anchorings.append(Anchoring(first.store, settings, first.site.id,
                                        app.state.deployment_store, DEPLOYMENT,
                                        witnesses_for(first.store, settings)))
        if anchorings:
            from coverwatch.evidence.service import run_anchorings

            tasks.append(asyncio.create_task(run_anchorings(anchorings), name="anchoring"))
        try:
            yield
        finally:
            began = time.monotonic()
            # The sites' own tasks first (the upkeep, which stops every site's ticker,
            # briefing, tours and watchdog, and the inputs): the worker's hand-over then
            # has the event loop to itself.
            for t in tasks:
                t.cancel()
            if bus is not None:
                await bus.close()
            handed = time.monotonic()
            await _stop_tasks(tasks)
            await asyncio.gather(*(svc.outbox.close() for svc in sites.values()))
            _drop_queued_work(pool)
            store.close()
            log.info("stopped in %.1f s (bus %.1f s, %d sites' tasks %.1f s)",
                     time.monotonic() - began, handed - began, len(sites),
                     time.monotonic() - handed)

    # The interactive API docs are unauthenticated by nature: only the demo serves them.
    app = FastAPI(
        title="coverwatch", version="0.1.0", lifespan=lifespan,
        docs_url="/docs" if settings.demo else None,
        redoc_url="/redoc" if settings.demo else None,
        openapi_url="/openapi.json" if settings.demo else None,
        # FastAPI's own OpenTelemetry hooks (unused here: no provider is configured) asked
        # the global providers on every request, a twenty-fifth of a phone's upload.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.login_limiter = LoginLimiter(settings.login_attempts_per_minute)
    app.state.replies = Replies()  # Idempotency-Key answers, per site (api/idempotency.py)

    install_problems(app)
    from coverwatch.api.osmand_path import OsmAndPath

    # Innermost: a phone's fix answered inside the limits, before the routing (issue 25).
    app.add_middleware(OsmAndPath)
    app.add_middleware(
        RequestLimits, max_body_bytes=settings.max_body_bytes,
        public_body_bytes=settings.public_body_bytes, trusted_proxies=settings.trusted_proxies,
    )
    # Outside the limits, which rewrite the client address: it must see the real peer.
    app.add_middleware(ForwardedProto, trusted_proxies=settings.trusted_proxies)

    # Outermost: limits and routes see the plain path of a site-scoped request.
    app.add_middleware(SiteRoutes)
    app.include_router(router)
    from coverwatch.api.people_routes import router as people_router

    app.include_router(people_router)
    from coverwatch.api.sites_routes import router as sites_router

    app.include_router(sites_router)
    from coverwatch.api.interop_routes import router as interop_router
    from coverwatch.api.orders_routes import router as orders_router
    from coverwatch.api.roster_routes import router as roster_router

    app.include_router(interop_router)
    from coverwatch.api.evidence_routes import router as evidence_router

    app.include_router(orders_router)
    app.include_router(evidence_router)
    from coverwatch.api.device_routes import router as device_router

    app.include_router(device_router)
    app.include_router(roster_router)
    from coverwatch.api.deadletter_routes import router as dead_letter_router

    app.include_router(dead_letter_router)
    try:
        from coverwatch.web import mount_web

        mount_web(app)
    except ImportError:
        pass
    # After the dashboard's routes: /api/v1/alerts/board must not be taken for an alert id.
    from coverwatch.api.supervision_routes import router as supervision_router

    app.include_router(supervision_router)
    from coverwatch.api.tour_routes import router as tour_router

    app.include_router(tour_router)
    return app
