"""The control-room dashboard served by ``coverwatch serve``: pages, their JSON API
and the static files (ES modules, CSS), all from the package: no CDN, no build.

:func:`mount_web` adds it all to the server app (bootstrap calls it).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from coverwatch.web import api, pages, planning

__all__ = ["mount_web", "static_dir"]


def static_dir() -> Path:
    """Where the packaged static files are."""
    return Path(str(resources.files("coverwatch.web").joinpath("static")))


def mount_web(app: FastAPI) -> None:
    """Add the dashboard's pages, JSON endpoints and static files to ``app``."""

    @app.exception_handler(pages.LoginRequired)
    async def _login(request: Request, exc: pages.LoginRequired) -> Response:
        return pages.login_redirect(exc)

    @app.exception_handler(pages.PageForbidden)
    async def _forbidden(request: Request, exc: pages.PageForbidden) -> Response:
        return pages.forbidden_page(exc)

    app.include_router(api.router)
    app.include_router(planning.router)
    app.include_router(pages.router)
    # Public: code and styles only, no data (the login page needs them).
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
