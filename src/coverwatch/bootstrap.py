"""The one wiring point: build the store, site, live engine and notifier, and
the FastAPI app that serves them (:func:`create_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from coverwatch.api.routes import router
from coverwatch.formats.sitefile import load_site_document
from coverwatch.server.access import LoginLimiter
from coverwatch.server.limits import RequestLimits
from coverwatch.server.problems import install as install_problems
from coverwatch.server.services import Services, wall_clock_us
from coverwatch.settings import Settings
from coverwatch.storage import open_store

__all__ = ["create_app"]

log = logging.getLogger("coverwatch.server")


def create_app(settings: Settings, *, clock: Callable[[], int] = wall_clock_us) -> FastAPI:
    """The server app. Background tasks (ticker, MQTT) run for the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from coverwatch.notify.notifier import Notifier
        from coverwatch.server.outbox import people_resolver

        doc = load_site_document(settings.site_path)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.db_url, settings.data_dir)
        notifier = Notifier(
            people_resolver(store), webhook_secret=settings.webhook_secret,
            site=doc.site, timezone=doc.site.timezone,
            timeout_s=settings.notify_timeout_s, retries=settings.notify_retries,
        )
        svc = await asyncio.to_thread(Services.build, settings, store, doc, clock, notifier)
        await asyncio.to_thread(store.audit_change, "server", "site.loaded", doc.site.id,
                                {"path": str(settings.site_path)})
        app.state.services = svc
        bus = None
        if settings.bus_url:  # distributed mode (docs/scale.md)
            from coverwatch.server.gateway import start_bus

            bus = await start_bus(svc)
        from coverwatch.server.briefing import Briefing

        svc.briefing = await asyncio.to_thread(Briefing.load, svc,
                                                settings.reacknowledge_within_s)
        await svc.outbox.check_targets()  # a target that reaches nobody: a system alert now
        from coverwatch.server.watchdog import run_heartbeat, run_watchdog

        tasks = [asyncio.create_task(svc.run_ticker(), name="ticker"),
                 asyncio.create_task(svc.briefing.run(), name="briefing"),
                 asyncio.create_task(run_watchdog(svc), name="watchdog"),
                 asyncio.create_task(run_heartbeat(svc), name="heartbeat"),
                 asyncio.create_task(asyncio.to_thread(notifier.warm_up), name="warm-up")]
        if settings.anchor_every_s > 0:
            from coverwatch.evidence.service import run_anchoring

            tasks.append(asyncio.create_task(run_anchoring(svc), name="anchoring"))
        if settings.purge_every_s > 0:
            from coverwatch.evidence.retention import run_purge

            tasks.append(asyncio.create_task(run_purge(svc, settings.purge_every_s),
                                             name="retention"))
        if settings.mqtt_url:
            from coverwatch.server.mqtt import run_mqtt

            tasks.append(asyncio.create_task(run_mqtt(svc, settings.mqtt_url), name="mqtt"))
        if settings.mqtt_url and settings.owntracks_mqtt:
            from coverwatch.server.owntracks import run_owntracks_mqtt

            tasks.append(asyncio.create_task(
                run_owntracks_mqtt(svc, settings.mqtt_url, settings.owntracks_mqtt),
                name="owntracks"))
        try:
            yield
        finally:
            if bus is not None:
                await bus.close()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await svc.outbox.close()
            store.close()

    # The interactive API docs are unauthenticated by nature: only the demo serves them.
    app = FastAPI(
        title="coverwatch", version="0.1.0", lifespan=lifespan,
        docs_url="/docs" if settings.demo else None,
        redoc_url="/redoc" if settings.demo else None,
        openapi_url="/openapi.json" if settings.demo else None,
    )
    app.state.login_limiter = LoginLimiter(settings.login_attempts_per_minute)

    install_problems(app)
    app.add_middleware(
        RequestLimits, max_body_bytes=settings.max_body_bytes,
        public_body_bytes=settings.public_body_bytes, trusted_proxies=settings.trusted_proxies,
    )

    app.include_router(router)
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
    try:
        from coverwatch.web import mount_web

        mount_web(app)
    except ImportError:
        pass
    # After the dashboard's routes: /api/v1/alerts/board must not be taken for an alert id.
    from coverwatch.api.supervision_routes import router as supervision_router

    app.include_router(supervision_router)
    return app
