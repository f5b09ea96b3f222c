"""Ingest: the one path every input (HTTP batch, OsmAnd, OwnTracks, MQTT, scans,
the roster) takes into a site.

Ordering and durability: a commit group takes the unit's lock, decides which
events are late against the horizon (and which late state events are applied
at it), commits them all to the store, and only then feeds them to the engine
and answers. The ticker takes the same lock to advance the horizon, so an
event can never be fed behind it. Requests that arrive while a commit is in
progress are committed together in the next transaction (group commit): one
fsync for many; the committer takes a group one turn of the loop after it is
started, so the requests already read join it, except when a device alarm is
first in line: an alarm goes ahead of everything waiting and waits for nothing.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from coverwatch.domain.alarms import alarm_alert
from coverwatch.domain.alerts import Alert
from coverwatch.domain.fixbatch import FixBatch
from coverwatch.server.admission import admit
from coverwatch.server.devices import ALARM_ALERT_KINDS
from coverwatch.server.groupcommit import append_isolated
from coverwatch.server.handlers.alerts import escalate, last_position
from coverwatch.server.happenings import (
    AlarmsStoredHere,
    AlertChanged,
    FixesStored,
    Happening,
    LateApplied,
)
from coverwatch.server.latewatch import late_applied_message
from coverwatch.server.pools import in_store
from coverwatch.server.unit import IngestResult, SiteUnit
from coverwatch.storage import Store
from coverwatch.storage.devices import CredentialsChanged, HeldToken
from coverwatch.storage.eventrows import key_fixes
from coverwatch.storage.events import ReportAlert
from coverwatch.storage.store import AppendResult

__all__ = ["CommitQueue", "alarm_alerts", "ingest"]


@dataclass
class _Request:
    rows: Sequence[dict[str, Any]] | FixBatch
    source: str
    device: str | None
    done: asyncio.Future[IngestResult]
    reports: Sequence[dict[str, Any]]
    held: HeldToken | None = None


@dataclass
class CommitQueue:
    """Requests waiting for the next commit, and the task that commits them."""

    waiting: list[_Request] = field(default_factory=list)
    committer: asyncio.Task[None] | None = None


async def ingest(
    unit: SiteUnit, rows: Sequence[dict[str, Any]] | FixBatch, *, source: str,
    device: str | None = None,
    reports: Sequence[dict[str, Any]] = (), held: HeldToken | None = None,
) -> IngestResult:
    """Store validated event rows durably, then feed the on-time ones live.

    Each row has the store's event columns (kind, t_us, officer, …). Returns
    only after the commit, so a 2xx or an MQTT ack means durable. ``reports``
    are device reports (:mod:`coverwatch.server.devices`); an alarm among them
    (sos, fallDown) raises its alert in the same commit. ``held``: the device token
    the upload came with, if it was not looked up in the store for this request; it is
    checked inside the commit (:class:`CredentialsChanged` if revoked or changed since).

    ``rows`` may be a keyed :class:`FixBatch` (plain fixes of a non-device sender, every
    one admissible as validated: flat, short, typed): stored column by column when its
    whole group is such batches and none is late, else as the rows it stands for.
    """
    if not rows and not reports:
        return IngestResult(0, 0, 0)
    if not isinstance(rows, FixBatch):
        admit(rows, reports)  # a record the store cannot take fails its own request only
        if unit.briefing is not None:  # a governed capability counts only while qualified
            unit.briefing.filter_rows(rows)
    done: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
    request = _Request(rows, source, device, done, reports, held)
    queue = unit.commits
    # Device alarms go ahead of everything else waiting (and first in any retry).
    queue.waiting.insert(0 if _alarmed(request) else len(queue.waiting), request)
    # The committer is its own task, so a client that hangs up mid-commit
    # cannot cancel the commit other requests are waiting on.
    if queue.committer is None or queue.committer.done():
        queue.committer = asyncio.create_task(_commit_waiting(unit), name="commit")
    return await done


async def _commit_waiting(unit: SiteUnit) -> None:
    queue = unit.commits
    while queue.waiting:
        if not _alarmed(queue.waiting[0]):
            # One more turn of the loop: the requests already read join this group (more
            # of them per fsync under load); an alarm waits for nothing.
            await asyncio.sleep(0)
        group, queue.waiting = queue.waiting, []
        await _commit_group(unit, group)


def _alarmed(request: _Request) -> bool:
    return any(rep.get("alarm") for rep in request.reports)


def _fail(group: Sequence[_Request], error: BaseException) -> None:
    for req in group:
        if not req.done.done():
            req.done.set_exception(error)


async def _commit_group(unit: SiteUnit, group: list[_Request]) -> None:
    batches = [req.rows for req in group if isinstance(req.rows, FixBatch)]
    if batches:
        if len(batches) == len(group) and await _commit_fixes(unit, group):
            return
        for req in group:  # the row path, as if they had come as rows
            if isinstance(req.rows, FixBatch):
                req.rows = req.rows.rows()
    try:
        async with unit.lock:
            now = unit.clock()
            tagged: list[dict[str, Any]] = []
            reports: list[dict[str, Any]] = []
            # In distributed mode the site's stream decides what is late.
            horizon = unit.live.horizon if unit.evaluates else None
            for i, req in enumerate(group):
                common = {"source": req.source, "device": req.device, "received_us": now,
                          "_request": i}
                assert not isinstance(req.rows, FixBatch)
                for r in req.rows:
                    r.update(common)
                    r["late"] = horizon is not None and int(r["t_us"]) < horizon
                tagged.extend(req.rows)
                for rep in req.reports:
                    reports.append({**rep, "source": req.source, "received_us": now,
                                    "_request": i})
            if unit.evaluates:  # a late state event is applied at the horizon
                unit.live.plan_late(tagged)
            alarms = any(rep.get("alarm") for rep in reports)
            held = {i: req.held for i, req in enumerate(group) if req.held is not None}
            result, failed = await in_store(_append_group, unit.store, tagged, reports,
                                            alarms, held)
            if unit.evaluates:
                unit.live.add(result.rows)
            for rep in result.reports:
                unit.watch.note(rep, now)
            raised = [Alert.from_record(rec) for rec in result.alerts]
            for alert in raised:
                unit.book.adopt(alert)
            # Escalate an SOS now, not at the next tick.
            steps = unit.book.tick(unit.clock()) if raised else []
        # A revoked token is the sender's answer, not a fault of the store.
        unit.health.commits(len(failed) < len(group), [
            e for e in failed.values() if not isinstance(e, CredentialsChanged)])
    except Exception as e:
        unit.health.committed(False, f"{type(e).__name__}: {str(e)[:200]}")
        _fail(group, e)
        return
    happened: list[Happening] = [AlertChanged(a) for a in raised]
    happened += [LateApplied(late_applied_message(r)) for r in result.rows
                 if r.get("applied_us") is not None]
    if raised:
        happened.append(AlarmsStoredHere(tuple(a.id for a in raised)))
    await unit.subscribers.dispatch(happened)
    if steps:
        unit.spawn(escalate(unit, steps), name="escalate")
    for i, error in failed.items():  # only these senders hear of the failure
        group[i].done.set_exception(error)
    if unit.bus is not None:  # answered only once the stream has them too
        try:
            await unit.bus.publish([r for r in tagged if r["_request"] not in failed],
                                   result.ids, result.rows)
        except Exception as e:  # the client retries; the event keys make it one event
            _fail(group, e)
            return
    inserted = [0] * len(group)
    late = [0] * len(group)
    for r in result.rows:
        inserted[r["_request"]] += 1
        late[r["_request"]] += bool(r["late"])
    if unit.site.duty_from_devices:  # the only reader of FixesStored: skip the scan otherwise
        fixes = tuple(r for r in result.rows if r["kind"] == "fix" and r.get("device"))
        if fixes:
            await unit.subscribers.dispatch([FixesStored(fixes)])
    for i, req in enumerate(group):
        if i in failed:
            continue
        unit.ingested[req.source] = unit.ingested.get(req.source, 0) + inserted[i]
        unit.late_total += late[i]
        unit.duplicates_total += len(req.rows) - inserted[i]
        if not req.done.done():
            req.done.set_result(IngestResult(inserted[i], len(req.rows) - inserted[i], late[i]))


async def _commit_fixes(unit: SiteUnit, group: list[_Request]) -> bool:
    """Commit a group of plain-fix batches column by column (issue 25); False, having
    stored nothing, where the row path must take it: a late fix (its state and count are
    the row path's), a bus to publish to, or a failed transaction (the row path retries
    each request alone, so only a refused one's sender hears of it)."""
    if unit.bus is not None or any(req.reports or req.held is not None for req in group) \
            or len({req.source for req in group}) > 1:
        return False
    async with unit.lock:
        now = unit.clock()
        merged = FixBatch.concat([(i, req.rows) for i, req in enumerate(group)
                                  if isinstance(req.rows, FixBatch)])
        merged.source = group[0].source
        if len(merged.keys) != len(merged):  # made elsewhere than the batch route
            key_fixes(merged)
        if unit.evaluates and min(merged.t_us) < unit.live.horizon:
            return False
        try:
            stored = await in_store(unit.store.append_fixes, merged, now)
        except Exception:
            return False
        n = len(merged)
        if len(stored) == n:  # every fix new, in the order given (ids ascend with it)
            kept: list[int] | range = range(n)
        else:  # a re-sent key: its first occurrence in the batch was stored, if any
            first: dict[str, int] = {}
            for at, key in enumerate(merged.keys):
                first.setdefault(key, at)
            kept = [first[key] for _, key in stored]
        if unit.evaluates:
            ids = [event_id for event_id, _ in stored]
            if isinstance(kept, range):
                unit.live.add_fix_columns(merged.t_us, merged.officer, merged.x, merged.y,
                                          merged.accuracy, ids)
            else:
                unit.live.add_fix_columns(
                    [merged.t_us[k] for k in kept], [merged.officer[k] for k in kept],
                    [merged.x[k] for k in kept], [merged.y[k] for k in kept],
                    [merged.accuracy[k] for k in kept], ids)
    unit.health.commits(True, [])
    start = 0
    taken = [] if isinstance(kept, range) else sorted(kept)
    for (_, size), req in zip(merged.parts, group, strict=True):
        inserted = size if isinstance(kept, range) else \
            bisect_left(taken, start + size) - bisect_left(taken, start)
        start += size
        unit.ingested[req.source] = unit.ingested.get(req.source, 0) + inserted
        unit.duplicates_total += size - inserted
        if not req.done.done():
            req.done.set_result(IngestResult(inserted, size - inserted, 0))
    return True


def _append_group(store: Store, tagged: list[dict[str, Any]], reports: list[dict[str, Any]],
                  alarms: bool, held: dict[int, HeldToken]
                  ) -> tuple[AppendResult, dict[int, Exception]]:
    # The alarms' alerts are decided before the commit and stored in it (a store thread).
    raised = alarm_alerts(store, reports) if alarms else []
    return append_isolated(store, tagged, reports, raised, held)


def alarm_alerts(store: Store, reports: list[dict[str, Any]]) -> list[ReportAlert]:
    """The alerts these device reports raise, for the store to keep in their commit
    where the report is new (a re-sent SOS raises nothing)."""
    out: list[ReportAlert] = []
    for at, rep in enumerate(reports):
        kind = ALARM_ALERT_KINDS.get(str(rep.get("alarm") or "").lower())
        officer = rep.get("officer")
        if kind is None or not officer:
            continue
        alert = alarm_alert(kind, rep, last_position(store, officer, rep.get("_fix")))
        out.append(ReportAlert(at, alert.to_record()))
    return out
