"""Deployment-wide routes: sessions (login, logout, who am I) and people (users, their
roles deployment-wide and per site, their contacts). Users are not per site, so
these routes need no site, and changing people needs a deployment-wide admin.
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from coverwatch.domain.time import seconds_to_us
from coverwatch.http.access import (
    PEOPLE,
    SESSION_COOKIE,
    Principal,
    all_sites,
    deployment_chain,
    deployment_site_unit,
    named_site,
    require,
)
from coverwatch.http.problems import error, problems
from coverwatch.http.proxyscheme import cookie_is_secure
from coverwatch.server.pools import Busy, check_password, password_room
from coverwatch.server.unit import SiteUnit
from coverwatch.storage import (
    DuplicateNameError,
    InvalidRolesError,
    password_problem,
    record_logout,
    record_user_change,
)

__all__ = ["router"]

router = APIRouter()
AnySvc = Annotated[SiteUnit, Depends(deployment_site_unit)]

# -- sessions ---------------------------------------------------------------------


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


@router.post("/api/v1/login", responses=problems(401, 429))
async def login(body: Login, request: Request, response: Response, svc: AnySvc) -> dict[str, Any]:
    limiter = request.app.state.login_limiter
    client = request.client.host if request.client else "?"
    wait = limiter.wait_s(body.username, client)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise HTTPException(429, f"too many login attempts; try again in {seconds} s",
                            headers={"Retry-After": str(seconds)})
    # Only the argon2 work runs in the password pool (one low-priority thread, a small
    # queue): a login flood never takes the CPU or the threads an SOS needs, and that
    # thread never holds the database (a read before, a write after, at normal priority).
    try:
        password_room()  # a full queue refuses before the read too
        record = await asyncio.to_thread(svc.store.password_record, body.username)
        found = await check_password(svc.store.match_password, record, body.password)
    except Busy as e:
        raise HTTPException(429, str(e), headers={"Retry-After": str(e.retry_after_s)}) from None
    if found is not None and found.renewed is not None:
        await asyncio.to_thread(svc.store.renew_password_hash, found)
    user = None if found is None else found.user
    await asyncio.to_thread(deployment_chain(request).record_login_attempt, body.username,
                            user is not None, client)
    if user is None or not user.active:
        limiter.failed(body.username, client)
        raise HTTPException(401, "wrong username or password")
    limiter.succeeded(body.username, client)
    session = await asyncio.to_thread(
        svc.store.create_session, user.id, now_us=svc.clock(),
        ttl_us=seconds_to_us(svc.settings.session_ttl_s),
    )
    response.set_cookie(
        SESSION_COOKIE, session.token, httponly=True, samesite="strict",
        secure=cookie_is_secure(request, svc.settings.secure_cookies),
        max_age=int(svc.settings.session_ttl_s), path="/",
    )
    return {"username": user.username, "roles": sorted(user.roles),
            "csrf_token": session.csrf_token}


@router.post("/api/v1/logout")
async def logout(
    request: Request, response: Response, svc: AnySvc,
    who: Annotated[Principal, Depends(require(*PEOPLE, anywhere=True))],
) -> dict[str, str]:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await asyncio.to_thread(svc.store.delete_session, token)
        await asyncio.to_thread(record_logout, deployment_chain(request), who.name)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=cookie_is_secure(request, svc.settings.secure_cookies))
    return {"status": "logged out"}


@router.get("/api/v1/me")
async def me(
    request: Request, svc: AnySvc,
    who: Annotated[Principal, Depends(require(*PEOPLE, anywhere=True))],
) -> dict[str, Any]:
    """Who is signed in: deployment-wide roles, and roles at each site they may see."""
    sites = all_sites(request)
    here = named_site(request)
    out: dict[str, Any] = {
        "name": who.name, "kind": who.kind,
        "roles": sorted(who.roles_at(None if here is None else here.store.site)),
        "sites": {name: sorted(who.roles_at(s.store.site)) for name, s in sites.items()
                  if who.roles_at(s.store.site)},
    }
    if here is not None:
        out["site"] = here.site.id
    token = request.cookies.get(SESSION_COOKIE)
    if who.kind == "user" and token:
        session = await asyncio.to_thread(svc.store.session_for, token, now_us=svc.clock())
        if session is not None:
            out["csrf_token"] = session.csrf_token
    return out



# -- administration ------------------------------------------------------------------


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    password: str = Field(min_length=12, max_length=1000)
    # Roles at single sites by site id, and deployment-wide roles (every site).
    sites: dict[str, list[str]] = Field(default_factory=dict, max_length=1000)
    roles: list[str] = Field(default_factory=list, max_length=10, validate_default=True)
    # Where the notifier reaches them (Apprise / signed-webhook URLs), checked on entry.
    contacts: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("roles")
    @classmethod
    def _some_role(cls, roles: list[str], info: ValidationInfo) -> list[str]:
        if not roles and not any((info.data.get("sites") or {}).values()):
            raise ValueError("a user needs a role: give roles, or roles at a site in sites")
        return roles

    @field_validator("password")
    @classmethod
    def _strong_password(cls, password: str, info: ValidationInfo) -> str:
        problem = password_problem(str(info.data.get("username", "")), password)
        if problem is not None:
            raise ValueError(problem)
        return password


class UserChange(BaseModel):
    roles: list[str] | None = Field(default=None, min_length=1, max_length=10)
    # Roles at single sites, by site id ([] removes them there); deployment-wide roles
    # stay in ``roles``.
    sites: dict[str, list[str]] | None = Field(default=None, max_length=1000)
    active: bool | None = None
    contacts: list[str] | None = Field(default=None, max_length=10)  # replaces the list
    add_contact: str | None = Field(default=None, max_length=2000)


def _check_targets(request: Request) -> None:
    """People changed: re-check at every site whether escalation targets reach anyone."""
    for s in all_sites(request).values():
        s.outbox.spawn(s.outbox.check_targets())


async def _set_site_roles(request: Request, svc: SiteUnit, who: Principal, username: str,
                          sites: dict[str, list[str]]) -> None:
    known = all_sites(request)
    unknown = sorted(set(sites) - set(known))
    if unknown:
        raise HTTPException(422, [error(f"no site {unknown[0]!r} in this deployment",
                                        field="sites")])
    for name, roles in sites.items():
        at = known[name]
        try:
            done = await asyncio.to_thread(svc.store.set_site_roles, username, at.store.site,
                                           roles)
        except InvalidRolesError as e:
            raise HTTPException(422, [error(str(e), field=f"sites.{name}")]) from None
        # Audited in the site's own chain: who may see and act at this site.
        await asyncio.to_thread(record_user_change, at.store, who.name, username,
                                "site-roles", {"site": name, "roles": sorted(done)})


def _user_json(u: Any, contacts: list[str] | None = None) -> dict[str, Any]:
    from coverwatch.notify.contacts import redact_contacts

    return {"username": u.username, "roles": sorted(u.roles), "active": u.active,
            "contacts": redact_contacts(contacts or [])}  # contacts are secrets: redacted


def _checked_contacts(urls: list[str], field: str) -> list[str]:
    from coverwatch.notify.contacts import InvalidContactError, check_contacts

    try:
        return check_contacts(urls)
    except InvalidContactError as e:
        raise HTTPException(422, [error(str(e), field=field)]) from None


@router.get("/api/v1/users")
async def users(
    request: Request, svc: AnySvc,
    who: Annotated[Principal, Depends(require("admin", deployment=True))],
) -> Any:
    people = await asyncio.to_thread(svc.store.list_users)
    contacts = await asyncio.to_thread(svc.store.contacts_by_user)
    by_key = {s.store.site: name for name, s in all_sites(request).items()}
    out = []
    for u in people:
        at = await asyncio.to_thread(svc.store.site_roles_of, u.username)
        out.append({**_user_json(u, contacts.get(u.username)),
                    "sites": {by_key[k]: sorted(r) for k, r in at.items() if k in by_key}})
    return {"users": out}


@router.post("/api/v1/users", status_code=201, responses=problems(409))
async def create_user(
    body: NewUser, request: Request, svc: AnySvc,
    who: Annotated[Principal, Depends(require("admin", deployment=True))],
) -> Any:
    from coverwatch.notify.contacts import redact_contacts

    contacts = _checked_contacts(body.contacts, "contacts")
    try:
        user = await asyncio.to_thread(svc.store.create_user, body.username, body.password,
                                       body.roles, site_roles_only=bool(body.sites))
    except InvalidRolesError as e:
        raise HTTPException(422, str(e)) from None
    except DuplicateNameError as e:
        raise HTTPException(409, str(e)) from None
    if contacts:
        contacts = await asyncio.to_thread(svc.store.set_contacts, body.username, contacts)
    await asyncio.to_thread(record_user_change, deployment_chain(request), who.name,
                            body.username, "created",
                            {"roles": sorted(body.roles),
                             "contacts": redact_contacts(contacts)})
    if body.sites:
        await _set_site_roles(request, svc, who, body.username, body.sites)
    if contacts or body.sites:
        _check_targets(request)
    return _user_json(user, contacts)


@router.patch("/api/v1/users/{username}", responses=problems(404))
async def change_user(
    username: str, body: UserChange, request: Request, svc: AnySvc,
    who: Annotated[Principal, Depends(require("admin", deployment=True))],
) -> Any:
    store = svc.store
    if await asyncio.to_thread(store.get_user, username) is None:
        raise HTTPException(404, f"no user {username}")
    from coverwatch.notify.contacts import redact_contacts

    replace = None if body.contacts is None else _checked_contacts(body.contacts, "contacts")
    added = None if body.add_contact is None else \
        _checked_contacts([body.add_contact], "add_contact")[0]
    try:
        if body.roles is not None:
            await asyncio.to_thread(store.set_roles, username, body.roles)
        if body.active is False:
            await asyncio.to_thread(store.deactivate_user, username)
        if replace is not None:
            await asyncio.to_thread(store.set_contacts, username, replace)
        if added is not None:
            await asyncio.to_thread(store.add_contact, username, added)
    except InvalidRolesError as e:
        raise HTTPException(422, str(e)) from None
    change = body.model_dump(exclude_none=True)
    for key in ("contacts", "add_contact"):  # secrets: the audit keeps them redacted
        if key in change:
            change[key] = redact_contacts(replace or []) if key == "contacts" \
                else redact_contacts([added or ""])[0]
    change.pop("sites", None)  # audited per site below
    await asyncio.to_thread(record_user_change, deployment_chain(request), who.name, username,
                            "changed", change)
    if body.sites:
        await _set_site_roles(request, svc, who, username, body.sites)
    if replace is not None or added is not None or body.roles is not None \
            or body.active is False or body.sites:
        _check_targets(request)
    user = await asyncio.to_thread(store.get_user, username)
    contacts = await asyncio.to_thread(store.contacts_of, username)
    return _user_json(user, contacts)
