"""One request's bad record never fails another sender's: the group commit, isolated.

Requests that arrive while a commit is in flight are stored together in the
next transaction (:func:`coverwatch.server.handlers.ingest.ingest`). Every
record was admitted first (:mod:`coverwatch.server.admission`); if the group's
transaction still fails, each request is retried in a transaction of its own,
so only the request the store refuses fails (and only its sender is told).
Device alarms go first in the retry, as they do everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coverwatch.storage import Store
from coverwatch.storage.store import AppendResult

__all__ = ["append_isolated"]

AlertsFor = Callable[[list[dict[str, Any]]], list[tuple[dict[str, Any], str]]]


def _merge(results: list[AppendResult]) -> AppendResult:
    rows = sorted((r for res in results for r in res.rows), key=lambda r: int(r["id"]))
    return AppendResult(
        sum(r.inserted for r in results), sum(r.duplicates for r in results),
        [int(r["id"]) for r in rows], rows,
        [rep for res in results for rep in res.reports],
        [a for res in results for a in res.alerts])


def append_isolated(
    store: Store, rows: list[dict[str, Any]], reports: list[dict[str, Any]],
    alerts_for: AlertsFor | None,
) -> tuple[AppendResult, dict[int, Exception]]:
    """Store a group (rows and reports carry ``_request``); returns what was stored
    and, per failed request, its error. Runs in a store thread."""
    try:
        return store.append_events(rows, reports=reports, alerts_for=alerts_for), {}
    except Exception as whole:
        requests = sorted({int(r["_request"]) for r in rows}
                          | {int(r["_request"]) for r in reports})
        if len(requests) <= 1:
            return AppendResult(0, 0, [], []), {i: whole for i in requests}
    alarmed = {int(r["_request"]) for r in reports if r.get("alarm")}
    results: list[AppendResult] = []
    failures: dict[int, Exception] = {}
    for i in sorted(requests, key=lambda i: (i not in alarmed, i)):
        mine = [r for r in rows if r["_request"] == i]
        theirs = [r for r in reports if r["_request"] == i]
        try:
            results.append(store.append_events(
                mine, reports=theirs, alerts_for=alerts_for if i in alarmed else None))
        except Exception as e:
            failures[i] = e
    return _merge(results), failures
