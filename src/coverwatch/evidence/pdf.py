"""The evidence pack's PDF report (reportlab): what happened at each post over the window.

Per post and rule a cover timeline chart (covered / short / inactive), then every lapse
(clipped ones marked), every alert with who was notified (recorded deliveries only; failed
attempts listed as failed) and who acknowledged or closed it, when and with what note, the
orders versions in force and who acknowledged them, the roster, rule changes with approver
and reason, and other alerts (device silence, SOS) where recorded. Times are in the site's
time zone.

The same data always renders to the same bytes, so ``evidence verify`` re-renders a pack's
PDF and compares it. Any change to what the report says or how it is laid out changes those
bytes: it must raise :data:`PDF_RENDERER`, which each pack records (``pdf_renderer`` in its
manifest), so that a pack made by another version is said to be "not re-checked" rather
than failed.
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.graphics.shapes import Drawing, Line, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from coverwatch.engine import RuleStats
from coverwatch.evidence.window import cover_with_data
from coverwatch.reports.notified import level_label, summary

__all__ = ["BACK_DATED_S", "PDF_RENDERER", "alert_rows", "arrived_late", "delivery_table",
           "render_report"]

BACK_DATED_S = 300  # as the API's audit of back-dated events
# The renderer's version: raise it with every change to the PDF's wording or layout.
PDF_RENDERER = 1


def arrived_late(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events stored as late, or that arrived more than ``BACK_DATED_S`` after their time."""
    return [r for r in rows if r.get("late") or int(r.get("received_us") or r["t_us"])
            - int(r["t_us"]) > BACK_DATED_S * 1_000_000]

_STATE_COLOUR = {"covered": colors.HexColor("#2e7d32"), "lapsed": colors.HexColor("#c62828"),
                 "inactive": colors.HexColor("#bdbdbd")}
_STYLES = getSampleStyleSheet()
_CELL = _STYLES["BodyText"].clone("cell", fontSize=7.5, leading=9)
_WIDTH = A4[0] - 30 * mm


def _local(zone: ZoneInfo, t_us: int | None) -> str:
    if t_us is None:
        return "-"
    return _dt.datetime.fromtimestamp(t_us / 1e6, zone).strftime("%Y-%m-%d %H:%M:%S")


def _iso_local(zone: ZoneInfo, iso: str | None) -> str:
    if not iso:
        return "-"
    from coverwatch.domain.time import parse_time

    return _local(zone, parse_time(iso))


def _table(head: Sequence[str], rows: list[list[Any]], widths: Sequence[float]) -> Table:
    data = [[Paragraph(f"<b>{h}</b>", _CELL) for h in head]]
    data += [[Paragraph(_escape(str(c)), _CELL) for c in r] for r in rows] or [
        [Paragraph("none", _CELL)] + [""] * (len(head) - 1)]
    t = Table(data, colWidths=[w * _WIDTH for w in widths], repeatRows=1)
    t.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ] + ([] if rows else [("SPAN", (0, 1), (-1, 1))])))  # "none" across the whole row
    return t


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _timeline(st: RuleStats, since: int, until: int, zone: ZoneInfo,
              no_data: list[dict[str, Any]]) -> Drawing:
    w, h = _WIDTH, 16 * mm
    d = Drawing(w, h)
    span = max(until - since, 1)
    left, bar_w, y = 0.0, w, 6 * mm
    pts = st.timeline
    for i, p in enumerate(pts):
        s0 = max(p.t, since)
        s1 = min(pts[i + 1].t if i + 1 < len(pts) else until, until)
        if s1 <= s0:
            continue
        x0 = left + bar_w * (s0 - since) / span
        x1 = left + bar_w * (s1 - since) / span
        d.add(Rect(x0, y, max(x1 - x0, 0.3), 7 * mm, fillColor=_STATE_COLOUR[p.state],
                   strokeColor=None))
    for s in no_data:  # purged: no data, whatever the engine made of it
        x0 = left + bar_w * (max(s["start_us"], since) - since) / span
        x1 = left + bar_w * (min(s["end_us"], until) - since) / span
        d.add(Rect(x0, y, max(x1 - x0, 0.3), 7 * mm, fillColor=colors.white,
                   strokeColor=colors.grey, strokeWidth=0.3, strokeDashArray=[1, 1]))
        d.add(String((x0 + x1) / 2, y + 2.5 * mm, "no data: purged", fontSize=6,
                     textAnchor="middle"))
    d.add(Rect(left, y, bar_w, 7 * mm, fillColor=None, strokeColor=colors.black,
               strokeWidth=0.4))
    for k in range(5):
        t = since + span * k // 4
        x = left + bar_w * k / 4
        d.add(Line(x, y, x, y - 1.5 * mm, strokeWidth=0.4))
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        d.add(String(x, 0, _local(zone, t)[5:16], fontSize=6, textAnchor=anchor))
    return d


def _by_alert(deliveries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in deliveries:
        out.setdefault(d["alert_id"], []).append(d)
    return out


def _by_at(zone: ZoneInfo, who: str | None, t_us: int | None) -> str:
    return "-" if who is None and t_us is None else f"{who or '-'} {_local(zone, t_us)}"


def _acknowledged(zone: ZoneInfo, a: dict[str, Any]) -> str:
    """Who acknowledged, or that nobody did: closing an alert nobody owned records the
    closer as its owner at the same instant (``Alert.close``), which is no acknowledgement."""
    if a.get("acknowledged_by") is None:
        return "not acknowledged"
    if (a.get("acknowledged_by"), a.get("acknowledged_at")) == (a.get("closed_by"),
                                                               a.get("closed_at")):
        return "not acknowledged (closed directly)"
    return _by_at(zone, a.get("acknowledged_by"), a.get("acknowledged_at"))


def alert_rows(alerts: list[dict[str, Any]], deliveries: list[dict[str, Any]],
               zone: ZoneInfo) -> list[list[Any]]:
    """The alerts table: handling, and who a notification was delivered to (never a
    failed attempt, never the policy's targets)."""
    sent = _by_alert(deliveries)
    return [[i, a["kind"], f"{a['post']} / {a['rule']}", _local(zone, a["alert_at"]),
             summary(sent.get(a["id"], ()), "delivered") or "nobody",
             _acknowledged(zone, a), a.get("acknowledgement_note") or "",
             _by_at(zone, a.get("closed_by"), a.get("closed_at")) if a.get("closed_at")
             else "not closed", a.get("close_note") or ""] for i, a in enumerate(alerts, 1)]


def _alert_for(lp: dict[str, Any], alerts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The lapse alert raised for a lapse (a lapse cut at the window's start or at a purge
    matches the alert of the lapse it is part of)."""
    for a in alerts:
        if a["kind"] == "lapse" and (a["post"], a["rule"]) == (lp["post"], lp["rule"]) \
                and lp["alert_at"] is not None and (
                a["lapse_start"] == lp["start_us"]
                or (lp["clipped_start"] and a["lapse_start"] < lp["start_us"])):
            return a
    return None


def _lapse_rows(lapses: list[dict[str, Any]], alerts: list[dict[str, Any]],
                no_data: list[dict[str, Any]], zone: ZoneInfo) -> list[list[Any]]:
    rows = []
    for lp in lapses:
        alert = _alert_for(lp, alerts)
        rows.append([lp["start_us"], lp["post"], lp["rule"], _iso_local(zone, lp["start"]),
                     _iso_local(zone, lp["end"]), _iso_local(zone, lp["alert_at"]),
                     "no alert" if alert is None else _local(zone, alert["alert_at"]),
                     lp["min_cover"], ", ".join(x for x, on in (
                         ("clipped at start", lp["clipped_start"]),
                         ("clipped at end", lp["clipped_end"]),
                         ("cut at purged history", lp.get("purged_edge"))) if on)])
    rows += [[s["start_us"], "all posts", "-", _iso_local(zone, s["start"]),
              _iso_local(zone, s["end"]), "-", "-", "-",
              "no data: purged (purge " + ", ".join(str(i) for i in s["purges"]) + ")"]
             for s in no_data]
    return [r[1:] for r in sorted(rows, key=lambda r: r[0])]


def delivery_table(alerts: list[dict[str, Any]], deliveries: list[dict[str, Any]],
                   zone: ZoneInfo) -> list[list[Any]]:
    """One row per recorded attempt, under its alert's number in the alerts table."""
    sent = _by_alert(deliveries)
    rows = []
    for i, a in enumerate(alerts, 1):
        for d in sent.get(a["id"], ()):
            outcome = "delivered" if d["outcome"] == "delivered" else \
                f"FAILED: {d.get('error') or 'not delivered'}"
            rows.append([i, level_label(d), d["target"], d.get("person") or "-",
                         d.get("address") or "-",
                         f"{outcome} ({d['attempts']} attempt{'s' * (d['attempts'] != 1)})",
                         _local(zone, d["at_us"])])
    return rows


def render_report(
    *, site: str, since: int, until: int, post: str | None, lapses: list[dict[str, Any]],
    stats: list[RuleStats], alerts: list[dict[str, Any]], deliveries: list[dict[str, Any]],
    orders: dict[str, Any], roster: list[dict[str, Any]], audit: list[dict[str, Any]],
    timezone: str, events: int, purges: dict[str, Any] | None = None,
    arrivals: list[dict[str, Any]] | None = None,
) -> bytes:
    """The report as PDF bytes: the same bytes for the same data (no wall clock: its
    creation date is the window's end, its ID derived from its content)."""
    zone = ZoneInfo(timezone)
    purges = purges or {"records": [], "no_data": []}
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=15 * mm, bottomMargin=15 * mm, invariant=1,
                            title=f"coverwatch evidence: {site}", author="coverwatch",
                            creator="coverwatch", producer="coverwatch")
    h1, h2, body = _STYLES["Heading1"], _STYLES["Heading2"], _STYLES["BodyText"]
    story: list[Any] = [
        Paragraph(f"Evidence report: site {_escape(site)}" + (f", post {_escape(post)}"
                                                               if post else ""), h1),
        Paragraph(f"From {_local(zone, since)} to {_local(zone, until)} ({timezone}). "
                  f"{events} stored events in the window were re-evaluated; lapses already "
                  "open at the start or still open at the end are cut at the window's edge "
                  "and marked <i>clipped</i>. Green: covered, red: short of cover, grey: rule "
                  "not active.", body),
        Spacer(1, 4 * mm),
        Paragraph("Cover by post and rule", h2),
    ]
    for st in stats:
        share, gone = cover_with_data(st, since, until, purges["no_data"])
        pct = ("no data (purged)" if share is None and gone else "never active"
               if share is None else f"{share:.1f} % covered")
        n = sum(1 for lp in lapses if (lp["post"], lp["rule"]) == (st.post, st.rule))
        purged = f" (no data (purged) for {gone / 3.6e9:.1f} h: left out)" if gone else ""
        story.append(KeepTogether([
            Paragraph(f"<b>{_escape(st.post)} / {_escape(st.rule)}</b> (need {st.need}): "
                      f"{pct} in this window{purged}, {n} lapse(s)", body),
            _timeline(st, since, until, zone, purges["no_data"]),
        ]))
    story += [Paragraph("Lapses", h2), Paragraph(
        "Grace ran out: when the lapse outlasted its rule's grace. Alert: when the alert "
        "raised for it was raised (alerts.json), or <i>no alert</i>. Where retention purged "
        "the positions there is no data, and no lapse is derived (purges.json).", _CELL),
        _table(["Post", "Rule", "Start", "End", "Grace ran out", "Alert", "Min. cover",
                "Note"], _lapse_rows(lapses, alerts, purges["no_data"], zone),
               [0.1, 0.13, 0.13, 0.13, 0.13, 0.13, 0.08, 0.17])]
    story += [Paragraph("Purged history", h2), _table(
        ["#", "What", "Purged at", "Everything before", "Removed", "Rule", "By", "Spared"],
        [[p["id"], p["what"], _iso_local(zone, p["at"]), _iso_local(zone, p["before"]),
          p["removed"], p["rule"], p["actor"],
          "; ".join(f"{_local(zone, a)} to {_local(zone, b)}" for a, b in p["held"])
          or "-"] for p in purges["records"]],
        [0.04, 0.09, 0.13, 0.13, 0.09, 0.25, 0.08, 0.19])]
    story += [Paragraph("Alerts and their handling", h2), Paragraph(
        "Notified: the people (or addresses) a notification was delivered to, from the "
        "recorded deliveries (deliveries.json); a failed attempt never counts as notified. "
        "Levels count from 1; each attempt is listed under \"Who was notified\" below.",
        _CELL), _table(
        ["#", "Kind", "Post / rule", "Alert", "Notified", "Acknowledged", "Note", "Closed",
         "Note"], alert_rows(alerts, deliveries, zone),
        [0.04, 0.09, 0.14, 0.11, 0.15, 0.14, 0.12, 0.12, 0.09])]
    story += [Paragraph("Who was notified", h2), _table(
        ["#", "Level", "Target", "Person", "Address", "Outcome", "At"],
        delivery_table(alerts, deliveries, zone),
        [0.04, 0.07, 0.17, 0.12, 0.25, 0.19, 0.16])]
    story += [Paragraph("Events that arrived late or back-dated", h2), Paragraph(
        f"Events stored behind the live horizon (late) or timed more than {BACK_DATED_S // 60} "
        "minutes before they arrived: they changed history after the fact, so the lapses "
        "derived now may differ from the alerts raised then. Posting such events through the "
        "API is audited (events.back-dated).", _CELL), _table(
        ["Event", "Kind", "Who / what", "Time", "Arrived", "Late by", "Source"],
        [[r["id"], r["kind"], r.get("officer") or r.get("flag") or r.get("post") or "-",
          _local(zone, r["t_us"]), _local(zone, r["received_us"]),
          f"{(r['received_us'] - r['t_us']) / 60e6:.1f} min" + (" (late)" if r.get("late")
                                                               else ""), r.get("source", "-")]
         for r in arrivals or ()], [0.1, 0.08, 0.16, 0.19, 0.19, 0.14, 0.14])]
    others = [a for a in alerts if a["kind"] not in ("lapse", "cover")]
    story += [Paragraph("Device silence and SOS", h2), Paragraph(
        f"{len(others)} alert(s) of other kinds (device silence, SOS, unbriefed) in the window; "
        "they are listed above with their handling." if others else
        "No device-silence or SOS alerts are recorded for the window.", body)]
    story += [Paragraph("Orders in force and acknowledgements", h2), _table(
        ["Post", "Version", "In force from", "Changes"],
        [[v["post"], v["version"], _iso_local(zone, v["since"]),
          "; ".join(v["changes"] or []) or "-"] for v in orders["versions"]],
        [0.2, 0.15, 0.2, 0.45]), Spacer(1, 2 * mm), _table(
        ["Officer", "Post", "Version", "Acknowledged", "Via"],
        [[a["officer"], a["post"], a["version"], _iso_local(zone, a["at"]),
          a["via"] + (f" ({a['device']})" if a.get("device") else "")]
         for a in orders["acknowledgements"]], [0.2, 0.2, 0.15, 0.25, 0.2])]
    story += [Paragraph("Roster", h2), _table(
        ["Officer", "Post / patrol", "Start", "End"],
        [[s["officer"], s["post"] or s["patrol"] or "-", _iso_local(zone, s["start"]),
          _iso_local(zone, s["end"])] for s in roster], [0.25, 0.25, 0.25, 0.25])]
    from coverwatch.domain.time import parse_time

    # The segment may reach past the window (later handling of its alerts): changes in it only.
    changes = [e for e in audit if e["action"].startswith("site.appl")
               and since <= parse_time(e["at"]) <= until]
    story += [Paragraph("Rule changes", h2), _table(
        ["When", "By", "Class", "Approval", "Reason"],
        [[_iso_local(zone, e["at"]), e["actor"], e["details"].get("class", "-"),
          e["details"].get("approval", "-"), e["details"].get("reason", "") or "-"]
         for e in changes], [0.2, 0.15, 0.15, 0.15, 0.35])]
    story += [Paragraph("Audit", h2), Paragraph(
        f"{len(audit)} audit entries follow the window (audit.jsonl: those recorded in it, "
        "those about its alerts and back-dated events, and every entry between); "
        "audit-anchor.json is a "
        "signed anchor of the chain's head at export. Check the pack with "
        "<font face='Courier'>coverwatch evidence verify pack.zip</font>.", body)]
    doc.build(story, onFirstPage=lambda canvas, _doc: _dated(canvas, until))
    return buf.getvalue()


def _dated(canvas: Any, until: int) -> None:
    """Date the PDF at the window's end, not at the wall clock (reportlab's invariant mode
    would date it 2000-01-01)."""
    from reportlab.pdfbase.pdfdoc import TimeStamp

    stamp = TimeStamp(invariant=1)
    stamp.t = until // 1_000_000
    stamp.lt = _dt.datetime.fromtimestamp(stamp.t, _dt.UTC).timetuple()
    stamp.YMDhms = tuple(stamp.lt)[:6]
    canvas._doc._timeStamp = stamp
