"""The dashboard's pages: login, the all-sites board, the control room, an officer's own
page, the audit log, plan checking. A page about one site of several names it in
``?site=``; the page's scripts then call that site's API routes.

Pages are static HTML shells (in ``pages/``) filled in by small ES modules from
the JSON API, so nothing needs building. Every page but ``/login`` needs a
session with one of the roles its :func:`page_require` names: a visitor
without one is sent to ``/login``; a signed-in user without the role gets a
403 page pointing to their own page.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from coverwatch.http.access import SUPERVISION, Principal, all_sites, authenticate

__all__ = ["LoginRequired", "PageForbidden", "home_for", "page_require", "router"]

router = APIRouter(include_in_schema=False)

_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
             "Referrer-Policy": "same-origin"}


class LoginRequired(Exception):
    """No (valid) session: send the browser to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    """Signed in, but without a role this page needs."""

    def __init__(self, who: Principal, roles: frozenset[str], site: str | None = None,
                 sites: int = 1) -> None:
        super().__init__(who.name)
        self.who = who
        self.roles = roles
        self.site = site  # the page's site, of several
        self.sites = sites


def page_require(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """Like :func:`coverwatch.http.access.require`, but answers browsers with pages."""
    allowed = frozenset(roles)

    async def check(request: Request) -> Principal:
        try:
            who = await authenticate(request)
        except HTTPException:
            who = None  # expired session or bad token: log in again
        if who is None:
            raise LoginRequired(request.url.path + (f"?{request.url.query}"
                                                    if request.url.query else ""))
        if not _roles_here(request, who) & allowed:
            sites = len(all_sites(request))
            raise PageForbidden(who, allowed, request.query_params.get("site")
                                if sites > 1 else None, sites)
        return who

    check.allowed_roles = allowed  # type: ignore[attr-defined]
    return check


def _roles_here(request: Request, who: Principal) -> frozenset[str]:
    """The caller's roles at the page's site (``?site=``), or anywhere for a board."""
    sites = all_sites(request)
    name = request.query_params.get("site")
    if name in sites:
        return who.roles_at(sites[name].store.site)
    if len(sites) == 1:
        return who.roles_at(next(iter(sites.values())).store.site)
    return who.roles.union(*who.site_roles.values())


def home_for(who: Principal, sites: int = 1) -> str:
    """The page a user lands on: the control room (or with several sites, the all-sites
    board) for supervision roles, else their duty."""
    roles = who.roles.union(*who.site_roles.values())
    if roles & set(SUPERVISION):
        return "/sites" if sites > 1 else "/control"
    return "/duty"


def _site_chosen(request: Request, who: Principal, *roles: str) -> Response | None:
    """A page about one site opened without ``?site=`` in a deployment of several: go to the
    only site where the user holds one of ``roles``, or ask which (the board, its links
    leading to this page). None when the page can be served as asked."""
    sites = all_sites(request)
    if len(sites) < 2 or request.query_params.get("site") in sites:
        return None
    allowed = set(roles)
    theirs = [name for name, svc in sites.items() if who.roles_at(svc.store.site) & allowed]
    path = request.url.path
    if len(theirs) == 1:
        return RedirectResponse(f"{path}?site={quote(theirs[0])}", status_code=303)
    return RedirectResponse(f"/sites?page={quote(path, safe='/')}", status_code=303)


def _page(name: str) -> HTMLResponse:
    text = resources.files("coverwatch.web").joinpath("pages", name).read_text("utf-8")
    return HTMLResponse(text, headers=_NO_STORE)


def login_redirect(exc: LoginRequired) -> Response:
    return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)


def forbidden_page(exc: PageForbidden) -> Response:
    roles = ", ".join(sorted(exc.roles))
    where = f" at {html.escape(exc.site)}" if exc.site else ""
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>Not allowed - coverwatch</title>"
        "<link rel='stylesheet' href='/static/app.css'></head>"
        "<body class='plain'><main class='card narrow'><h1>Not allowed</h1>"
        f"<p>You are signed in as <b>{html.escape(exc.who.name)}</b>. "
        f"This page needs one of the roles{where}: {html.escape(roles)}.</p>"
        f"<p><a href='{home_for(exc.who, exc.sites)}'>Go to your page</a></p></main></body></html>"
    )
    return HTMLResponse(body, status_code=403, headers=_NO_STORE)


@router.get("/login")
async def login_page() -> HTMLResponse:
    """Public by necessity: the form that creates a session."""
    return _page("login.html")


@router.get("/")
async def home(
    request: Request,
    who: Annotated[Principal, Depends(page_require("officer", *SUPERVISION))],
) -> RedirectResponse:
    return RedirectResponse(home_for(who, len(all_sites(request))), status_code=303)


@router.get("/sites")
async def sites_board(
    who: Annotated[Principal, Depends(page_require(*SUPERVISION))],
) -> HTMLResponse:
    """The all-sites board: each site's state at a glance, leading into its control room."""
    return _page("sites.html")


@router.get("/control")
async def control(
    request: Request, who: Annotated[Principal, Depends(page_require(*SUPERVISION))],
) -> Response:
    return _site_chosen(request, who, *SUPERVISION) or _page("control.html")


@router.get("/duty")
async def duty(who: Annotated[Principal, Depends(page_require("officer"))]) -> HTMLResponse:
    return _page("duty.html")


@router.get("/audit")
async def audit(
    request: Request, who: Annotated[Principal, Depends(page_require("auditor", "admin"))],
) -> Response:
    return _site_chosen(request, who, "auditor", "admin") or _page("audit.html")


@router.get("/people")
async def people(
    request: Request, who: Annotated[Principal, Depends(page_require("admin"))],
) -> Response:
    """Admins: users' contacts (redacted), and escalation targets that reach nobody."""
    return _site_chosen(request, who, "admin") or _page("people.html")


@router.get("/planning")
async def planning(
    request: Request, who: Annotated[Principal, Depends(page_require(*SUPERVISION))],
) -> Response:
    """Check a roster and patrol plan before the shift (checking needs supervisor or admin)."""
    return _site_chosen(request, who, *SUPERVISION) or _page("planning.html")
