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

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, func, literal, or_, select, union_all

from coverwatch.storage.audit import _prepare_details
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
    "audit_each",
    "default_owner",
    "key_for_site",
    "keys_for_sites",
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


_EXISTS_PER_STATEMENT = 100  # keys per UNION (SQLite allows 500 terms in a compound select)


def keys_for_sites(store: Store, site_ids: Sequence[str]) -> list[str]:
    """:func:`key_for_site` of a deployment's sites in order (the first is ``first``; one
    alone is ``sole``), in one transaction whatever their number."""
    wanted = list(dict.fromkeys([*site_ids, DEFAULT_SITE]))
    have: set[str] = set()
    with store.engine.connect() as conn, conn.begin():
        for i in range(0, len(wanted), _EXISTS_PER_STATEMENT):
            parts = [select(literal(k).label("site")).where(or_(*(
                exists().where(t.c.site == k) for t in (audit, server_state, events, devices))))
                for k in wanted[i : i + _EXISTS_PER_STATEMENT]]
            have.update(conn.execute(union_all(*parts) if len(parts) > 1 else parts[0])
                        .scalars())
        owner = conn.execute(
            select(audit.c.subject)
            .where(audit.c.site == DEFAULT_SITE, audit.c.action == "site.loaded")
            .order_by(audit.c.id.desc()).limit(1)).scalar()
    out = []
    for i, site_id in enumerate(site_ids):
        if site_id != DEFAULT_SITE and site_id in have:
            out.append(site_id)
        elif len(site_ids) == 1 or owner == site_id or (
                owner is None and i == 0 and DEFAULT_SITE in have):
            out.append(DEFAULT_SITE)
        else:
            out.append(site_id)
    return out


def audit_each(entries: Sequence[tuple[Store, str, str, str, Mapping[str, Any]]]) -> None:
    """Append ``(store, actor, action, subject, details)`` entries, each to its store's
    site's chain, in one transaction (a start's ``site.loaded`` of every site)."""
    if not entries:
        return
    with entries[0][0]._audit_write() as conn:
        for store, actor, action, subject, details in entries:
            store._append_audit_locked(conn, actor, action, subject, _prepare_details(details))


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
