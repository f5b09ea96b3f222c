"""Site versions: each site file's text and the event time from which it was in force.

Kept in the server state (key ``site.versions``), oldest first, so a restart, a
report or an evidence pack re-evaluates history under the rules that were in
force at each moment. Changing the rules is :mod:`coverwatch.server.siteapply`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from coverwatch.storage.state import StateRepository

__all__ = ["VERSIONS_KEY", "SiteVersion", "load_versions", "save_versions"]

VERSIONS_KEY = "site.versions"


@dataclass(frozen=True, slots=True)
class SiteVersion:
    """A site file's text and the event time from which it was in force."""

    effective_us: int
    source: str


def load_versions(store: StateRepository) -> list[SiteVersion]:
    raw = store.get_state(VERSIONS_KEY)
    if raw is None:
        return []
    return [SiteVersion(int(v["effective_us"]), str(v["source"])) for v in orjson.loads(raw)]


def save_versions(store: StateRepository, versions: Iterable[SiteVersion]) -> None:
    store.set_state(VERSIONS_KEY, orjson.dumps(
        [{"effective_us": v.effective_us, "source": v.source} for v in versions]
    ).decode())
