"""The one wiring point: build the store, site, live engine and notifier, and
the FastAPI app that serves them (:func:`create_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from coverwatch.api.routes import router
from coverwatch.formats.sitefile import load_site_document
from coverwatch.server.access import LoginLimiter
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

        doc = load_site_document(settings.site_path)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.db_url, settings.data_dir)
        notifier = Notifier(
            store.notification_urls, webhook_secret=settings.webhook_secret,
            site=doc.site, timezone=doc.site.timezone,
        )
        svc = await asyncio.to_thread(Services.build, settings, store, doc, clock, notifier)
        await asyncio.to_thread(store.audit_change, "server", "site.loaded", doc.site.id,
                                {"path": str(settings.site_path)})
        app.state.services = svc
        from coverwatch.server.briefing import Briefing

        svc.briefing = await asyncio.to_thread(Briefing.load, svc,
                                                settings.reacknowledge_within_s)
        tasks = [asyncio.create_task(svc.run_ticker(), name="ticker"),
                 asyncio.create_task(svc.briefing.run(), name="briefing")]
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
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            store.close()

    # The interactive API docs are unauthenticated by nature: only the demo serves them.
    app = FastAPI(
        title="coverwatch", version="0.1.0", lifespan=lifespan,
        docs_url="/docs" if settings.demo else None,
        redoc_url="/redoc" if settings.demo else None,
        openapi_url="/openapi.json" if settings.demo else None,
    )
    app.state.login_limiter = LoginLimiter(settings.login_attempts_per_minute)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field, never echo the input (it may hold a password).
        detail = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
             "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    app.include_router(router)
    from coverwatch.api.interop_routes import router as interop_router
    from coverwatch.api.orders_routes import router as orders_router
    from coverwatch.api.roster_routes import router as roster_router

    app.include_router(interop_router)
    app.include_router(orders_router)
    from coverwatch.api.device_routes import router as device_router

    app.include_router(device_router)
    app.include_router(roster_router)
    try:
        from coverwatch.web import mount_web

        mount_web(app)
    except ImportError:
        pass
    return app
