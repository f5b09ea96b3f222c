"""Site versions: each site file's text and the event time from which it was in force.

Kept in the server state (key ``site.versions``), oldest first, so a restart, a
report or an evidence pack re-evaluates history under the rules that were in
force at each moment. Changing the rules is :mod:`coverwatch.server.siteapply`.
Each version is a ``rule-version`` leaf of the site's transparency log, appended
in the transaction that first saves it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from sqlalchemy import select

from coverwatch.storage.startreads import SiteStart
from coverwatch.storage.state import StateRepository
from coverwatch.storage.tables import server_state, tlog_leaves
from coverwatch.storage.tlog import append_record_leaf, leaf_bytes, record_digest

__all__ = ["VERSIONS_KEY", "SiteVersion", "load_versions", "save_versions"]

VERSIONS_KEY = "site.versions"
# The digest of the versions last saved, all logged: a start that saves the same versions
# again skips looking for their leaves, a scan of every leaf (one per stored event).
LOGGED_KEY = "site.versions.logged"


@dataclass(frozen=True, slots=True)
class SiteVersion:
    """A site file's text and the event time from which it was in force."""

    effective_us: int
    source: str


def load_versions(store: StateRepository | SiteStart) -> list[SiteVersion]:
    raw = store.get_state(VERSIONS_KEY)
    if raw is None:
        return []
    return [SiteVersion(int(v["effective_us"]), str(v["source"])) for v in orjson.loads(raw)]


def save_versions(store: StateRepository, versions: Iterable[SiteVersion],
                  stored: StateRepository | SiteStart | None = None) -> None:
    """Save the versions and, in the same transaction, log each not yet logged
    (leaf ``{"hash": record_digest({"effective_us", "source"})}``, ref its effective_us).
    ``stored``: where the start read the saved ones; the same versions, all logged, are
    not written again (a restart of many sites writes nothing here)."""
    records = [{"effective_us": v.effective_us, "source": v.source} for v in versions]
    text = orjson.dumps(records).decode()
    digest = hashlib.sha256(text.encode()).hexdigest()
    if stored is not None and stored.get_state(LOGGED_KEY) == digest and \
            stored.get_state(VERSIONS_KEY) == text:
        return
    with store._write() as conn:
        store._set_state_in(conn, VERSIONS_KEY, text)
        done = conn.execute(select(server_state.c.value).where(
            server_state.c.site == store.site, server_state.c.key == LOGGED_KEY)).scalar()
        if done == digest:
            return
        logged = set(conn.execute(select(tlog_leaves.c.leaf).where(
            tlog_leaves.c.site == store.site, tlog_leaves.c.kind == "rule-version")).scalars())
        for r in records:
            ref = str(r["effective_us"])
            if leaf_bytes("rule-version", ref, {"hash": record_digest(r)}).decode() not in logged:
                append_record_leaf(conn, store.site, "rule-version", ref, r)
        store._set_state_in(conn, LOGGED_KEY, digest)
