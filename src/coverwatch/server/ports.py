"""What an adapter (the outbox, the briefing, the tours) may see of its site: narrow
views built by the wiring point (:mod:`coverwatch.server.wiring`), never the unit.

Reads are callables (the site in force and the shown cover change over time); the
alert book is seen through :class:`coverwatch.domain.alertbook.AlertsRead`; the only
way to change the site is :data:`coverwatch.server.commands.Execute`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from coverwatch.domain.alertbook import AlertsRead
from coverwatch.domain.site import Site
from coverwatch.server.commands import Execute
from coverwatch.server.feed import Feed

if TYPE_CHECKING:
    from coverwatch.server.live import LiveCover

__all__ = ["BusView", "Ingest", "SiteView"]


class BusView(Protocol):
    """Distributed mode, as the adapters see it: who owns the site, and its cover."""

    @property
    def replica(self) -> LiveCover | None: ...

    def owns(self) -> bool: ...

    async def refresh_replica(self) -> None: ...


class Ingest(Protocol):
    """The ingest handler for this site (what the briefing puts on and off duty)."""

    def __call__(self, rows: Sequence[dict[str, Any]], *, source: str,
                 device: str | None = None,
                 reports: Sequence[dict[str, Any]] = ()) -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class SiteView:
    """One site as an adapter sees it."""

    site: Callable[[], Site]  # the rules in force
    shown: Callable[[], LiveCover]  # the cover the views show
    clock: Callable[[], int]
    alerts: AlertsRead
    feed: Feed
    bus: Callable[[], BusView | None]  # distributed mode (None: this node evaluates)
    execute: Execute  # the one way to change the site (commands)
    spawn: Callable[[Coroutine[Any, Any, Any], str], None]  # background work, kept till done


