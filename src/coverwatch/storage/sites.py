"""Where each site's rows are: a deployment's sites and their store keys.

Every per-site row carries a ``site`` key. A deployment that has only ever
watched one site keeps that site's rows under ``default`` (the key every row
got when the column was added, migration 0002), so nothing moves when a
single-site deployment upgrades; any other site's key is its id. When a
second site is added, ``default`` stays with the site that loaded it (the
newest ``site.loaded`` audit entry under it names that site), so the first
site's history, audit chain and devices are never rewritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import exists, func, select

from coverwatch.storage.tables import (
    DEFAULT_SITE,
    audit,
    devices,
    events,
    server_state,
    site_roles,
)

if TYPE_CHECKING:  # the store uses these functions when it opens
    from coverwatch.storage.store import Store

__all__ = [
    "DEFAULT_SITE",
    "DEPLOYMENT",
    "default_owner",
    "key_for_site",
    "site_store",
    "sites_in_store",
]

# The audit chain of deployment-wide actions (logins, users, roles) when there are
# several sites; not a site id (those are lower-case words and hyphens).
DEPLOYMENT = "_deployment"


def _has_rows(store: Store, key: str) -> bool:
    with store.engine.connect() as conn:
        return any(
            conn.execute(select(exists().where(t.c.site == key))).scalar()
            for t in (audit, server_state, events, devices)
        )


def default_owner(store: Store) -> str | None:
    """The id of the site whose rows are under ``default`` (the newest to load there)."""
    with store.engine.connect() as conn:
        return conn.execute(
            select(audit.c.subject)
            .where(audit.c.site == DEFAULT_SITE, audit.c.action == "site.loaded")
            .order_by(audit.c.id.desc()).limit(1)
        ).scalar()


def key_for_site(store: Store, site_id: str, *, sole: bool = False, first: bool = False) -> str:
    """The store key of site ``site_id``.

    ``sole``: the deployment watches only this site (today's single-site
    server), which keeps ``default`` unless the site already has rows of its
    own. ``first``: the first site of a deployment, which takes over ``default``
    rows that no site has claimed (written by the CLI before any server ran).
    """
    if site_id != DEFAULT_SITE and _has_rows(store, site_id):
        return site_id
    if sole:
        return DEFAULT_SITE
    owner = default_owner(store)
    if owner == site_id or (owner is None and first and _has_rows(store, DEFAULT_SITE)):
        return DEFAULT_SITE
    return site_id


def sites_in_store(store: Store) -> list[str]:
    """Every store key with an audit chain, in order of first use."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(audit.c.site, func.min(audit.c.id)).group_by(audit.c.site))
        seen = dict.fromkeys(site for site, _ in sorted(rows, key=lambda r: r[1]))
        for (site,) in conn.execute(select(site_roles.c.site).distinct()):
            seen.setdefault(site, None)
    return list(seen)


def site_store(store: Store, key: str) -> Store:
    """A store bound to ``key`` sharing ``store``'s connections and audit key."""
    return store.for_site(key)
