"""The standalone verifier's check that ``alerts.json`` holds every alert the audit segment
records, as last recorded there.

Part of the standalone verifier (:mod:`coverwatch.evidence.standalone`), built with it
into one file (:mod:`coverwatch.evidence.verifierfile`); standard library only. Each
transition of an alert (raised, escalated, acknowledged, closed, resolved…) is an audit
entry of subject ``alert:<id>`` whose ``details`` are the alert's record as saved, written
in the transaction that saved it. The segment is a contiguous, hash-linked run of the
chain, every entry proved in the log: an insider re-signing the pack cannot take an entry
out of its middle. So every alert whose record in the segment places it in the pack's
window (``alert_at`` at or before ``until``, not ended before ``since``, of the pack's
post) must be in ``alerts.json``, with the record of its last entry in the segment (an
older transition, proved by an older leaf, would hide what came after).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

__all__ = ["check_alert_records"]


class _Findings(Protocol):
    notes: list[str]

    def fail(self, member: str, why: str) -> None: ...


def _in_window(record: dict[str, Any], since: int, until: int, post: Any) -> bool:
    """The export's own choice of the pack's alerts."""
    try:
        ended = record.get("closed_at") or record.get("resolved_at") or until
        return int(record["alert_at"]) <= until and int(ended) >= since and (
            post is None or record.get("post") == post)
    except (KeyError, TypeError, ValueError):
        return False


def check_alert_records(files: dict[str, bytes], manifest: dict[str, Any],
                        entries: list[dict[str, Any]], res: _Findings) -> None:
    """See the module doc; each alert lacking, or carried as an older record, is named."""
    since, until = int(manifest["since_us"]), int(manifest["until_us"])
    carried = {str(a.get("id")): a for a in json.loads(files["alerts.json"])}
    last: dict[str, tuple[int, dict[str, Any]]] = {}
    for e in entries:
        details, subject = e.get("details"), str(e.get("subject"))
        if subject.startswith("alert:") and isinstance(details, dict) and \
                str(details.get("id")) == subject[6:] and "alert_at" in details:
            last[subject[6:]] = (int(e["id"]), details)
    bad = 0
    for ident, (entry, record) in sorted(last.items(), key=lambda kv: kv[1][0]):
        if not _in_window(record, since, until, manifest.get("post")):
            continue
        if ident not in carried:
            why = (f"lacks alert {ident} ({record.get('kind')} at {record.get('post')}), "
                   f"which audit entry {entry} records in the window: its record was "
                   "dropped from the pack")
        elif carried[ident] != record:
            why = (f"carries alert {ident} other than audit entry {entry} last recorded it "
                   "(an older or altered record)")
        else:
            continue
        bad += 1
        if bad <= 5:
            res.fail("alerts.json", why)
    if bad > 5:
        res.fail("alerts.json", f"and {bad - 5} more alert(s) differ from the audit segment")
    if not bad:
        res.notes.append(f"alerts.json holds every alert the audit segment records in the "
                         f"window ({len(last)} alert(s) recorded there), as last recorded")
