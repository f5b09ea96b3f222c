"""Distributed mode: a node's alert book kept in step with the store, where other nodes
raise, resolve, escalate and acknowledge this site's alerts (PostgreSQL is the system of
record for alerts), and the dead-man check's reports. See docs/scale.md."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from coverwatch.domain.alerts import Alert, AlertState, alert_id_for
from coverwatch.domain.supervision import open_direct
from coverwatch.engine import CoverChange
from coverwatch.server.commands import RaiseDirect, ResolveDirect
from coverwatch.server.handlers.alerts import apply_cover_changes, execute
from coverwatch.server.happenings import Happening
from coverwatch.server.unit import SiteUnit
from coverwatch.storage.busoutbox import Fenced

__all__ = ["DEADMAN_RULE", "apply_as_owner", "deadman_reports", "refresh_book",
           "refresh_books",
           "site_orphaned", "site_owned", "take_in"]

DEADMAN_RULE = "deadman:"
_LIVE = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


def refresh_book(svc: SiteUnit, records: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Bring the alert book in line with the store (run in a thread, under ``svc.lock``).

    Other nodes raise, resolve, escalate and acknowledge alerts of this site;
    PostgreSQL has them all. Returns how many alerts changed here. ``records``: the
    site's alert records, read with other sites' (:func:`refresh_books`).
    """
    if records is None:
        records = svc.store.load_alerts()
    return sum(take_in(svc, Alert.from_record(rec)) for rec in records)


async def refresh_books(units: Sequence[SiteUnit], *, outboxes: bool = False) -> None:
    """:func:`refresh_book` of many sites (and with ``outboxes`` their
    :meth:`~coverwatch.server.outbox.Outbox.load`), their rows read in one transaction per
    batch of sites (storage/startreads.py) while each site's lock is held, as the one-site
    refresh reads under it: a start or a takeover of many sites costs transactions per
    batch, not per site."""
    from coverwatch.storage.startreads import BATCH

    units = sorted(units, key=lambda u: u.store.site)  # one order: no two wait on each other
    for i in range(0, len(units), BATCH):
        batch = units[i : i + BATCH]
        async with contextlib.AsyncExitStack() as held:
            for u in batch:
                await held.enter_async_context(u.lock)
            await asyncio.to_thread(_refresh_batch, batch, outboxes)


def _refresh_batch(batch: Sequence[SiteUnit], outboxes: bool) -> None:
    from coverwatch.storage.startreads import read_starts

    reads = read_starts(batch[0].store.engine, [u.store.site for u in batch],
                        alerts_only=not outboxes)
    for u in batch:
        one = reads[u.store.site]
        refresh_book(u, one.load_alerts())
        if outboxes:
            u.outbox.load(one)


def take_in(svc: SiteUnit, alert: Alert) -> bool:
    """Put the store's version of an alert in the book (under ``svc.lock``); True if new here."""
    if alert.id not in svc.book:
        svc.book.adopt(alert)
        return True
    here = svc.book.get(alert.id)
    # A level this node is about to record as due stays due (else it is sent twice).
    alert.escalated_level = max(alert.escalated_level, here.escalated_level)
    if here.to_record() == alert.to_record():
        return False
    svc.book.restore(alert)
    return True


def deadman_reports(sites: Mapping[str, SiteUnit]) -> tuple[
        Callable[[str, float], Awaitable[None]], Callable[[str], Awaitable[None]]]:
    """The dead-man check's two reports, each to the site's own unit."""

    async def orphaned(site: str, seconds: float) -> None:
        if site in sites:
            await site_orphaned(sites[site], site, seconds)

    async def owned(site: str) -> None:
        if site in sites:
            await site_owned(sites[site], site)

    return orphaned, owned


async def site_orphaned(svc: SiteUnit, site: str, seconds: float) -> None:
    """The dead-man check's report: one ``system`` alert per outage (as far as the store shows)."""
    async with svc.lock:
        await asyncio.to_thread(refresh_book, svc)
    if open_direct(svc.book, "system", rule=DEADMAN_RULE + site):
        return  # another node reported it already
    await execute(svc, RaiseDirect(
        "system", "", DEADMAN_RULE + site,
        f"Nobody has evaluated cover at site {site} for {seconds:.0f} s: no worker holds it."))


async def site_owned(svc: SiteUnit, site: str) -> None:
    """An owner is back: resolve the dead-man alert."""
    async with svc.lock:
        await asyncio.to_thread(refresh_book, svc)
    for alert in open_direct(svc.book, "system", rule=DEADMAN_RULE + site):
        await execute(svc, ResolveDirect(alert.id, f"site {site} has an owner again"))


def apply_as_owner(svc: SiteUnit,
                   changes: list[CoverChange]) -> tuple[list[CoverChange], list[Happening]]:
    """Changes, less those the store already shows, applied as the single process does
    (and what that did, for the subscribers)."""
    out = []
    for ch in changes:
        if ch.kind in ("alert", "lapse-ended"):
            rec = svc.store.get_alert_record(
                alert_id_for("lapse", ch.post, ch.rule, ch.lapse_start))
            if rec is not None:
                stored = Alert.from_record(rec)
                take_in(svc, stored)
                if ch.kind == "lapse-ended" and stored.state not in _LIVE:
                    continue  # resolved before the takeover: once is enough
        out.append(ch)
    try:
        happened = apply_cover_changes(svc, out)
    except Fenced:
        # The book took changes the store refused: back to the store's version.
        for ch in out:
            alert_id = alert_id_for("lapse", ch.post, ch.rule, ch.lapse_start)
            rec = svc.store.get_alert_record(alert_id)
            if rec is not None:
                svc.book.restore(Alert.from_record(rec))
            else:
                svc.book.forget(alert_id)
        raise
    return out, happened
