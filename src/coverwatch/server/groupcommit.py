"""One request's bad record never fails another sender's: the group commit, isolated.

Requests that arrive while a commit is in flight are stored together in the
next transaction (:func:`coverwatch.server.handlers.ingest.ingest`). Every
record was admitted first (:mod:`coverwatch.server.admission`); if the group's
transaction still fails, each request is retried in a transaction of its own,
so only the request the store refuses fails (and only its sender is told).
Device alarms go first in the retry, as they do everywhere.

Uploads whose device token was found without a query (a token already seen) carry it
as ``held``: the tokens of the whole group are checked in one indexed query inside the
group's own transaction, so a revoke committed by anyone (the CLI, another process)
before the commit refuses the upload. A request whose token is stale is left out
(:class:`~coverwatch.storage.devices.CredentialsChanged` is its answer) and the rest
committed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from coverwatch.storage import Store
from coverwatch.storage.devices import CredentialsChanged, Device, HeldToken
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


def _held(held: Mapping[int, HeldToken], requests: set[int] | None = None
          ) -> dict[str, Device]:
    return {h.token_hash: h.device for i, h in held.items()
            if requests is None or i in requests}


def _only(reports: list[dict[str, Any]], alerts: Sequence[ReportAlert],
          keep: Callable[[int], bool]) -> tuple[list[dict[str, Any]], list[ReportAlert]]:
    """The reports of the requests ``keep`` takes, and their alerts re-pointed at them."""
    at = {j: k for k, j in enumerate(j for j, r in enumerate(reports)
                                     if keep(int(r["_request"])))}
    return ([reports[j] for j in at],
            [replace(a, report=at[a.report]) for a in alerts if a.report in at])


def append_isolated(
    store: Store, rows: list[dict[str, Any]], reports: list[dict[str, Any]],
    alerts: Sequence[ReportAlert] = (), held: Mapping[int, HeldToken] | None = None,
) -> tuple[AppendResult, dict[int, Exception]]:
    """Store a group (rows and reports carry ``_request``) and the alerts its reports
    raise; returns what was stored and, per failed request, its error. ``held``: per
    request, the device token its upload came with, checked inside the commit. Runs in
    a store thread."""
    refused: dict[int, Exception] = {}
    held = dict(held or {})
    while True:
        try:
            result = store.append_events(rows, reports=reports, alerts=alerts,
                                         held=_held(held) or None)
            return result, refused
        except CredentialsChanged as e:  # leave those out, commit the rest again
            gone = {i for i, h in held.items() if h.token_hash in e.stale}
            if not gone:
                raise
            for i in gone:
                refused[i] = CredentialsChanged({held.pop(i).token_hash})
            rows = [r for r in rows if r["_request"] not in gone]
            reports, alerts = _only(reports, alerts, lambda j: j not in gone)  # noqa: B023 (used at once)
            if not rows and not reports:
                return AppendResult(0, 0, [], []), refused
        except Exception as whole:
            requests = sorted({int(r["_request"]) for r in rows}
                              | {int(r["_request"]) for r in reports})
            if len(requests) <= 1:
                return AppendResult(0, 0, [], []), {**refused, **{i: whole for i in requests}}
            break
    alarmed = {int(r["_request"]) for r in reports if r.get("alarm")}
    results: list[AppendResult] = []
    failures: dict[int, Exception] = dict(refused)
    for i in sorted(requests, key=lambda i: (i not in alarmed, i)):
        mine = [r for r in rows if r["_request"] == i]
        theirs, raised = _only(reports, alerts, lambda j: j == i)  # noqa: B023 (used at once)
        try:
            results.append(store.append_events(mine, reports=theirs, alerts=raised,
                                               held=_held(held, {i}) or None))
        except Exception as e:
            failures[i] = e
    return _merge(results), failures
