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

That holds only if the segment was not cut at an end, taking with it the entries of an
alert that lie wholly before or after it (:func:`check_segment_ends`): it must start at
the chain's first entry (``prev_hash`` of zeros) or hold an entry recorded before
``since``, and end at the chain's last entry as the pack's tree head names it
(``audit_last``; an entry recorded after ``until`` would not do: an alert of the window
may be closed, or raised over late events, after any such entry). A head without
``audit_last`` (signed before heads carried it) proves neither end: each unproved end is
then noted, not failed.

An alert raised before the segment's first entry, open in the window and with no later
transition, has no entry in the segment at all. The tree head (from v 3) signs
``open_alerts``, the digest of the list of alerts open or acknowledged in the log it covers
(records sorted by id, canonical JSON); the pack carries that list as ``open-alerts.json``
(:func:`check_open_alerts`): each of those alerts that the pack's window and post take in
must be in ``alerts.json``, as that list records it.

``roster.json`` and ``orders.json`` are records of the database: the head (from v 3) signs
``briefing``, the digest of every shift, orders version and acknowledgement of the site,
which the pack carries whole as ``briefing.json``; the two members must be exactly its view
of the window and post (:func:`check_briefing`), so none is altered, added or dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Protocol

from coverwatch.evidence.standalone_proofs import _DELIVERY_KEY, _us

__all__ = ["check_alert_records", "check_briefing", "check_delivery_entries", "check_open_alerts",
           "check_records", "check_segment_ends", "linked_entries"]

GENESIS = "0" * 64


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


def _compare_alerts(wanted: list[tuple[dict[str, Any], str]], carried: dict[str, Any],
                    since: int, until: int, post: Any, res: _Findings, *, missing: str,
                    other: str, more: str, raised: bool = False) -> int:
    """Name (the first five of) the alerts of the window in ``wanted`` (record, source)
    that ``alerts.json`` lacks or carries otherwise; the number of them."""
    bad = 0
    for record, src in wanted:
        ident = str(record.get("id"))
        if not _in_window(record, since, until, post):
            continue
        if ident not in carried:
            when = f", raised {record.get('alert_at')}" if raised else ""
            why = (f"lacks alert {ident} ({record.get('kind')} at {record.get('post')}"
                   f"{when}), " + missing.format(src=src))
        elif carried[ident] != record:
            why = f"carries alert {ident} " + other.format(src=src)
        else:
            continue
        bad += 1
        if bad <= 5:
            res.fail("alerts.json", why)
    if bad > 5:
        res.fail("alerts.json", f"and {bad - 5} {more}")
    return bad


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
    bad = _compare_alerts(
        [(r, f"audit entry {entry}") for entry, r in sorted(last.values(), key=lambda v: v[0])],
        carried, since, until, manifest.get("post"), res,
        missing="which {src} records in the window: its record was dropped from the pack",
        other="other than {src} last recorded it (an older or altered record)",
        more="more alert(s) differ from the audit segment")
    if not bad:
        res.notes.append(f"alerts.json holds every alert the audit segment records in the "
                         f"window ({len(last)} alert(s) recorded there), as last recorded")


def _ends(entries: list[dict[str, Any]], since: int,
          last: Any) -> tuple[str | None, str | None]:
    """Why the segment's start, and its end, are not shown whole (None: shown)."""
    if not entries:
        return (None, None) if last is None else (
            "the audit segment is empty", "the head does not show the audit chain empty")
    first, end = entries[0], entries[-1]
    start = None if first.get("prev_hash") == GENESIS or any(
        _us(e["at"]) < since for e in entries) else (
        f"the audit segment starts after the window's start (entry {first['id']}, "
        f"{first['at']}) and is not the chain's first entry")
    stop = None if isinstance(last, dict) and last.get("id") == end["id"] and \
        last.get("hash") == end["hash"] else (
        f"the audit segment ends at entry {end['id']} ({end['at']}), and the head does not "
        "show it is the chain's last entry")
    return start, stop


def check_segment_ends(manifest: dict[str, Any], head: dict[str, Any],
                       entries: list[dict[str, Any]], res: _Findings) -> None:
    """See the module doc: a segment that may have been cut at either end is named."""
    proved = "audit_last" in head
    start, stop = _ends(entries, int(manifest["since_us"]), head.get("audit_last", False))
    for why in (start, stop):
        if why is None:
            continue
        if proved:
            res.fail("audit.jsonl", f"{why}: it may have been cut short, with the entries "
                                    "of alerts beyond it")
        else:
            res.notes.append(f"{why}: not proved whole (the pack's tree head predates "
                             "audit_last), so alerts beyond that end are not proved absent")
    if proved and start is None and stop is None:
        res.notes.append("the audit segment is whole at both ends: it starts before the "
                         "window (or at the chain's first entry) and ends at the chain's "
                         "last entry, as the tree head shows")


def check_open_alerts(files: dict[str, bytes], manifest: dict[str, Any], head: dict[str, Any],
                      res: _Findings, *, canonical: Callable[[Any], bytes]) -> None:
    """See the module doc: each open alert of the window missing from ``alerts.json``, or
    carried there other than ``open-alerts.json`` records it, is named."""
    if "open_alerts" not in head:
        res.notes.append("the pack's tree head predates open_alerts: an alert raised before "
                         "the audit segment and never changed since is not proved present")
        return
    if "open-alerts.json" not in files:
        res.fail("open-alerts.json", "missing: the pack's tree head signs the open alerts")
        return
    live = json.loads(files["open-alerts.json"])
    if not isinstance(live, list) or \
            hashlib.sha256(canonical(live)).hexdigest() != head["open_alerts"]:
        res.fail("open-alerts.json", "is not the list of open alerts the tree head signs "
                                     "(open_alerts): alerts were dropped or altered")
        return
    since, until = int(manifest["since_us"]), int(manifest["until_us"])
    carried = {str(a.get("id")): a for a in json.loads(files["alerts.json"])}
    bad = _compare_alerts(
        [(r, "") for r in live], carried, since, until, manifest.get("post"), res,
        missing="open when the pack's tree head was signed (open-alerts.json): its record "
                "was dropped from the pack",
        other="other than the tree head's open alerts record it (an older or altered record)",
        more="more open alert(s) are missing or differ", raised=True)
    if not bad:
        res.notes.append(f"alerts.json holds every alert open in the window when the tree "
                         f"head was signed ({len(live)} open in all), as the head signs them")


def linked_entries(proofs: dict[str, Any], head: dict[str, Any], manifest: dict[str, Any],
                   entries: list[dict[str, Any]], res: _Findings) -> set[int]:
    """The audit entries that may go without an inclusion proof: from ``proofs.json``'s
    ``linked.audit`` (an entry id) to the end of the segment, when that end is the head's
    ``audit_last``. Each such entry's hash is fixed by the links after it up to that entry,
    which the signed head names (the links are checked with the segment); only entries
    recorded after ``until`` are carried so."""
    first = (proofs.get("linked") or {}).get("audit")
    if first is None:
        return set()
    last = head.get("audit_last")
    if not entries or not isinstance(last, dict) or last.get("id") != entries[-1]["id"] \
            or last.get("hash") != entries[-1]["hash"]:
        res.fail("proofs.json", f"leaves audit entries from {first} unproved, but the "
                                "segment does not end at the tree head's audit_last")
        return set()
    until = int(manifest["until_us"])
    linked = [e for e in entries if int(e["id"]) >= int(first)]
    early = [e for e in linked if _us(e["at"]) <= until]
    if early:
        res.fail("audit.jsonl", f"entry {early[0]['id']} ({early[0]['at']}) was recorded "
                                "by the window's end, yet carries no inclusion proof")
        return set()
    res.notes.append(f"{len(linked)} audit entr{'y' if len(linked) == 1 else 'ies'} recorded "
                     "after the window proved by their links to the head's audit_last")
    return {int(e["id"]) for e in linked}


def _briefing_view(records: dict[str, Any], since: int, until: int,
                   post: Any) -> tuple[list[Any], dict[str, Any]]:
    """As ``coverwatch.evidence.briefing.briefing_view`` (the export's own choice)."""
    roster = [{k: r[k] for k in ("officer", "post", "patrol", "start", "end")}
              for r in records["roster"] if r["end_us"] > since and r["start_us"] < until]
    return roster, {
        "versions": [v for v in records["versions"] if v["since_us"] <= until
                     and (post is None or v["post"] == post)],
        "acknowledgements": [{k: a[k] for k in ("officer", "post", "version", "at", "via",
                                                "device")}
                             for a in records["acknowledgements"] if a["at_us"] <= until
                             and (post is None or a["post"] == post)]}


def _first_difference(shown: list[Any], signed: list[Any], what: str) -> str:
    for row in shown:
        if row not in signed:
            return f"carries {what} {json.dumps(row, sort_keys=True)} that the tree head's " \
                   "record does not hold (added or altered)"
    for row in signed:
        if row not in shown:
            return f"lacks {what} {json.dumps(row, sort_keys=True)}, which the tree head's " \
                   "record holds for the window (dropped)"
    return f"lists its {what}s other than the tree head's record (order or repeats)"


def check_briefing(files: dict[str, bytes], manifest: dict[str, Any], head: dict[str, Any],
                   res: _Findings, *, canonical: Callable[[Any], bytes]) -> None:
    """See the module doc: ``roster.json`` and ``orders.json`` against ``briefing.json``,
    whose digest the head signs; the first difference of each is named."""
    if "briefing" not in head:
        res.notes.append("the pack's tree head predates briefing: roster.json and "
                         "orders.json are signed by the manifest only")
        return
    if "briefing.json" not in files:
        res.fail("briefing.json", "missing: the pack's tree head signs the roster and orders")
        return
    records = json.loads(files["briefing.json"])
    if not isinstance(records, dict) or \
            hashlib.sha256(canonical(records)).hexdigest() != head["briefing"]:
        res.fail("briefing.json", "is not the roster and orders record the tree head signs "
                                  "(briefing): shifts, orders or acknowledgements were altered")
        return
    roster, orders = _briefing_view(records, int(manifest["since_us"]),
                                    int(manifest["until_us"]), manifest.get("post"))
    ok = True
    shown_roster = json.loads(files["roster.json"])
    if shown_roster != roster:
        ok = False
        res.fail("roster.json", _first_difference(shown_roster, roster, "shift"))
    shown_orders = json.loads(files["orders.json"])
    for key, what in (("versions", "orders version"), ("acknowledgements", "acknowledgement")):
        if shown_orders.get(key) != orders[key]:
            ok = False
            res.fail("orders.json", _first_difference(shown_orders.get(key) or [],
                                                      orders[key], what))
    if ok:
        res.notes.append(f"roster.json ({len(roster)} shift(s)) and orders.json "
                         f"({len(orders['versions'])} version(s), "
                         f"{len(orders['acknowledgements'])} acknowledgement(s)) are the "
                         "tree head's record of the window")


def check_delivery_entries(files: dict[str, bytes], entries: list[dict[str, Any]],
                           res: _Findings) -> None:
    """Every ``notification.delivered`` / ``notification.failed`` entry of the segment about
    an alert of ``alerts.json`` must have its row in ``deliveries.json`` (same alert,
    level, purpose, target, person, address, time and outcome): deliveries emptied or
    thinned in a re-signed pack are named (the entries are proved; the rows, once dropped,
    carry no proof to fail)."""
    ids = {str(a.get("id")) for a in json.loads(files["alerts.json"])}
    shown: dict[tuple[Any, ...], int] = {}
    for d in json.loads(files["deliveries.json"]):
        key = (str(d.get("alert_id")), *(d.get(k) for k in _DELIVERY_KEY), d.get("outcome"))
        shown[key] = shown.get(key, 0) + 1
    for e in entries:
        action, subject = str(e.get("action")), str(e.get("subject"))
        if not action.startswith("notification.") or not subject.startswith("alert:") or \
                subject[6:] not in ids or not isinstance(e.get("details"), dict):
            continue
        key = (subject[6:], *(e["details"].get(k) for k in _DELIVERY_KEY),
               action.partition(".")[2])
        if not shown.get(key):
            res.fail("deliveries.json", f"audit entry {e['id']} records a delivery that is "
                                        f"missing ({action} about alert {subject[6:]})")
            return
        shown[key] -= 1


def check_records(files: dict[str, bytes], manifest: dict[str, Any], head: dict[str, Any],
                  entries: list[dict[str, Any]], res: _Findings, *,
                  canonical: Callable[[Any], bytes]) -> None:
    """Every check of this module, in order: the alerts the segment records, the segment's
    ends, the open alerts, the roster and orders, the deliveries."""
    check_alert_records(files, manifest, entries, res)
    check_segment_ends(manifest, head, entries, res)
    check_open_alerts(files, manifest, head, res, canonical=canonical)
    check_briefing(files, manifest, head, res, canonical=canonical)
    check_delivery_entries(files, entries, res)
