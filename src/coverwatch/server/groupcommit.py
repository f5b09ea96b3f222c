"""One request's bad record never fails another sender's: the group commit, isolated.

Requests that arrive while a commit is in flight are stored together in the
next transaction (:func:`coverwatch.server.handlers.ingest.ingest`). Every
record was admitted first (:mod:`coverwatch.server.admission`); if the group's
transaction still fails, each request is retried in a transaction of its own,
so only the request the store refuses fails (and only its sender is told).
Device alarms go first in the retry, as they do everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from coverwatch.storage import Store
from coverwatch.storage.events import ReportAlert
from coverwatch.storage.store import AppendResult

__all__ = ["append_isolated"]


def _merge(results: list[AppendResult]) -> AppendResult:
    rows = sorted((r for res in results for r in res.rows), key=lambda r: int(r["id"]))
    return AppendResult(
        sum(r.inserted for r in results), sum(r.duplicates for r in results),
        [int(r["id"]) for r in rows], rows,
        [rep for res in results for rep in res.reports],
        [a for res in results for a in res.alerts])


def append_isolated(
    store: Store, rows: list[dict[str, Any]], reports: list[dict[str, Any]],
    alerts: Sequence[ReportAlert] = (),
) -> tuple[AppendResult, dict[int, Exception]]:
    """Store a group (rows and reports carry ``_request``) and the alerts its reports
    raise; returns what was stored and, per failed request, its error. Runs in a
    store thread."""
    try:
        return store.append_events(rows, reports=reports, alerts=alerts), {}
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
        at = {j: k for k, j in enumerate(j for j, r in enumerate(reports)
                                         if r["_request"] == i)}
        theirs = [reports[j] for j in at]
        raised = [replace(a, report=at[a.report]) for a in alerts if a.report in at]
        try:
            results.append(store.append_events(mine, reports=theirs, alerts=raised))
        except Exception as e:
            failures[i] = e
    return _merge(results), failures
