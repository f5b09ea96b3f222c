"""Supervision records: the daily activity report per site and shift, and time in area.

* **Time in area** per officer and post over any range: each fix counts from its time until
  the officer's next fix or until it goes stale (``stale_after_s``), whichever is first,
  for every post whose area holds it (a polygon post: inside; a point post: within the
  largest ``within_m`` of its rules, accuracy not added). On duty or not: it is where they were.
* **Daily activity report** for one day in the site's time zone, optionally one shift
  (``HH:MM-HH:MM``, local; may run past midnight): officers going on and off duty, time on
  post per officer and post and each unbroken stint with its times, lapses and alerts with
  their handling and who was notified (one row per recorded delivery, failed ones as
  failed), orders
  acknowledgements missed or late for rostered shifts, SOS and device-silence alerts, and
  what people did (from the audit log, each note against the action it was written with),
  apart from what the system did on its own (engine, devices, server).

Rows are plain dicts; ``reports/supervision_out.py`` writes them as CSV and PDF.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from coverwatch.domain.geometry import signed_distance
from coverwatch.domain.site import Site
from coverwatch.domain.time import format_time, parse_time, seconds_to_us
from coverwatch.reports.history import recompute
from coverwatch.reports.notified import level_label, load_delivery_rows, summary
from coverwatch.reports.purged import purged_lapses
from coverwatch.storage import Store
from coverwatch.storage.versions import SiteVersion

__all__ = ["AUTOMATIC", "DailyReport", "daily_report", "day_window", "stint_rows", "time_in_area"]

# The actors that are the system itself (the store's audit entries name them), not a person.
AUTOMATIC = frozenset({"engine", "server", "devices", "device", "tours", "briefing", "bus"})
_SUPERVISOR_ACTIONS = ("alert.", "site.", "roster.", "hold.", "retention.", "orders.issued",
                       "evidence.")


def _in_post(site: Site, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for post in site.posts:
        if post.area is not None:
            out[post.id] = signed_distance(x, y, area=post.area) <= 0
        elif post.at is not None:
            reach = max((r.within_m for r in post.rules if np.isfinite(r.within_m)), default=0.0)
            out[post.id] = signed_distance(x, y, at=post.at) <= reach
    return out


def time_in_area(site: Site, store: Store, since: int, until: int) -> list[dict[str, Any]]:
    """Seconds each officer spent in each post's area in [since, until); see the docstring."""
    return [{k: v for k, v in r.items() if k != "stints"}
            for r in _on_post(site, store, since, until)]


def _on_post(site: Site, store: Store, since: int, until: int) -> list[dict[str, Any]]:
    """:func:`time_in_area`'s rows, each with its ``stints`` ((start, end) in µs)."""
    stale = seconds_to_us(site.stale_after_s)
    rows = [r for r in store.events_between(since - stale, until) if r["kind"] == "fix"]
    by_officer: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        by_officer.setdefault(r["officer"], []).append((int(r["t_us"]), r["x"], r["y"]))
    out = []
    for officer in sorted(by_officer):
        fixes = by_officer[officer]
        t = np.array([f[0] for f in fixes], np.int64)
        nxt = np.append(t[1:], np.iinfo(np.int64).max)
        end = np.minimum(np.minimum(nxt, t + stale), until)
        start = np.maximum(t, since)
        dur = np.clip(end - start, 0, None)
        inside = _in_post(site, np.array([f[1] for f in fixes]), np.array([f[2] for f in fixes]))
        for post, mask in inside.items():
            us = int(dur[mask].sum())
            if us:
                out.append({"officer": officer, "post": post, "seconds": us / 1e6,
                            "since": format_time(since), "until": format_time(until),
                            "stints": _stints(start[mask & (dur > 0)], end[mask & (dur > 0)])})
    return out


def _stints(start: np.ndarray, end: np.ndarray) -> list[tuple[int, int]]:
    """Fix intervals joined where one ends as the next begins: unbroken time on post."""
    out: list[tuple[int, int]] = []
    for a, b in zip(start.tolist(), end.tolist(), strict=True):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def stint_rows(time_on_post: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per stint: officer, post, from, until and minutes, in time order per officer."""
    return [{"officer": r["officer"], "post": r["post"], "from": format_time(a),
             "until": format_time(b), "minutes": round((b - a) / 60e6, 1)}
            for r in time_on_post for a, b in r["stints"]]


def day_window(day: str, timezone: str, shift: str | None = None) -> tuple[int, int]:
    """[start, end) in µs of a local day (YYYY-MM-DD), or of a shift on it (HH:MM-HH:MM)."""
    zone = ZoneInfo(timezone)
    d = _dt.date.fromisoformat(day)
    if shift is None:
        lo = _dt.datetime(d.year, d.month, d.day, tzinfo=zone)
        hi = lo + _dt.timedelta(days=1)
    else:
        a, _, b = shift.partition("-")
        ta, tb = _dt.time.fromisoformat(a), _dt.time.fromisoformat(b)
        lo = _dt.datetime.combine(d, ta, zone)
        hi = _dt.datetime.combine(d if tb > ta else d + _dt.timedelta(days=1), tb, zone)
    return int(lo.timestamp() * 1_000_000), int(hi.timestamp() * 1_000_000)


@dataclass(slots=True)
class DailyReport:
    site: str
    timezone: str
    since: int
    until: int
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _acknowledgements(store: Store, since: int, until: int) -> list[dict[str, Any]]:
    """Per rostered shift starting in the window: the orders in force at its start, and when
    (if at all) the officer acknowledged them: on time, late, or missed."""
    out = []
    versions = store.orders_versions()
    acks = store.acknowledgements()
    for s in store.list_shifts(from_us=since, until_us=until):
        if s.post is None or not since <= s.start < until:
            continue
        in_force = [v for v in versions if v.post == s.post and v.since <= s.start]
        if not in_force:
            continue
        v = in_force[-1]
        mine = [a for a in acks if (a.officer, a.post, a.version) == (s.officer, s.post, v.version)
                and a.at <= s.end]
        if not mine:
            state, at = "missed", None
        else:
            at = mine[0].at
            state = "on time" if at <= s.start else "late"
        out.append({"officer": s.officer, "post": s.post, "shift_start": format_time(s.start),
                    "version": v.version, "state": state,
                    "acknowledged": None if at is None else format_time(at),
                    "late_s": None if at is None or at <= s.start else (at - s.start) / 1e6})
    return out


def daily_report(
    store: Store, versions: list[SiteVersion], site: Site, day: str, shift: str | None = None,
) -> DailyReport:
    """The daily activity report; see the module docstring."""
    since, until = day_window(day, site.timezone, shift)
    rep = DailyReport(site.id, site.timezone, since, until)
    duty = [r for r in store.events_between(since, until) if r["kind"] == "duty"]
    rep.sections["duty"] = [{"officer": r["officer"], "at": format_time(int(r["t_us"])),
                             "change": "on" if r["on"] else "off",
                             "capabilities": r.get("capabilities") or ""} for r in duty]
    on_post = _on_post(site, store, since, until)
    rep.sections["time on post"] = [{k: v for k, v in r.items() if k != "stints"} | {
        "stints": len(r["stints"])} for r in on_post]
    rep.sections["stints"] = stint_rows(on_post)
    lapses = recompute(store, versions, since=since, until=until - 1).lapses if versions else []
    # No lapse where positions were purged: "no data (purged)" instead, as in evidence packs.
    graces = {(p.id, r.id): seconds_to_us(r.grace_s) for p, r in site.rules()}
    spans, rep.sections["lapses"] = purged_lapses(
        store, lapses, since, until, seconds_to_us(site.stale_after_s), graces)
    rep.sections["no data (purged)"] = [
        {"from": s["start"], "until": s["end"], "purges": s["purges"], "note": "no data (purged)"}
        for s in spans]
    alerts = [a for a in store.load_alerts() if since <= a["alert_at"] < until]
    # Who was notified comes from the recorded deliveries, not the level an alert was due.
    sent = load_delivery_rows(store, [a["id"] for a in alerts])
    by_alert: dict[str, list[dict[str, Any]]] = {}
    for d in sent:
        by_alert.setdefault(d["alert_id"], []).append(d)
    rep.sections["alerts"] = [{
        "kind": a["kind"], "post": a["post"], "rule": a["rule"],
        "alert_at": format_time(a["alert_at"]),
        "notified": summary(by_alert.get(a["id"], ()), "delivered"),
        "not_reached": summary(by_alert.get(a["id"], ()), "failed"),
        **_acknowledged(a), "closed_by": a.get("closed_by"),
        "close_note": a.get("close_note") or ""} for a in alerts]
    kinds = {a["id"]: a for a in alerts}
    rep.sections["notifications"] = [{
        "post": kinds[d["alert_id"]]["post"], "rule": kinds[d["alert_id"]]["rule"],
        "alert_at": format_time(kinds[d["alert_id"]]["alert_at"]), "level": level_label(d),
        "target": d["target"], "person": d["person"], "address": d["address"],
        "outcome": d["outcome"], "error": d["error"], "attempts": d["attempts"],
        "sent_at": d["at"]} for d in sent]
    rep.sections["SOS and silent devices"] = [a for a in rep.sections["alerts"]
                                              if a["kind"] not in ("lapse", "cover")]
    rep.sections["orders acknowledgements"] = _acknowledgements(store, since, until)
    actions = []
    after = 0
    while True:
        batch = store.audit_entries(after, 1000)
        if not batch:
            break
        for e in batch:
            if e.action.startswith(_SUPERVISOR_ACTIONS) and since <= parse_time(e.at) < until:
                actions.append({"at": e.at, "who": e.actor, "action": e.action,
                                "subject": e.subject, "note": _note(e.action, e.details)})
        after = batch[-1].id
    rep.sections["supervisor actions"] = [a for a in actions if a["who"] not in AUTOMATIC]
    rep.sections["automatic actions"] = [a for a in actions if a["who"] in AUTOMATIC]
    return rep


def _acknowledged(a: dict[str, Any]) -> dict[str, Any]:
    """Who acknowledged the alert, when, with what note; an alert closed while nobody owned
    it records its closer as owner at the same instant (``Alert.close``): no
    acknowledgement, and its note is the close note, shown once, against the close."""
    if a.get("acknowledged_by") is not None and (
            a.get("acknowledged_by"), a.get("acknowledged_at")) == (a.get("closed_by"),
                                                                   a.get("closed_at")):
        return {"acknowledged_by": "not acknowledged (closed directly)",
                "acknowledged_at": None, "note": ""}
    return {"acknowledged_by": a.get("acknowledged_by"),
            "acknowledged_at": None if a.get("acknowledged_at") is None
            else format_time(a["acknowledged_at"]),
            "note": a.get("acknowledgement_note") or ""}


def _note(action: str, details: dict[str, Any]) -> str:
    """The note written with this action only: an alert's record carries its acknowledgement
    note on every later change, which must not be shown again against those."""
    if action == "alert.acknowledged":
        return str(details.get("acknowledgement_note") or "")
    if action == "alert.closed":
        return str(details.get("close_note") or "")
    return "" if action.startswith("alert.") else str(details.get("reason") or "")
