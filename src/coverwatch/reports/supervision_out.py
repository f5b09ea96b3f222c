"""Supervision records as files: CSV (one row per record, with its section) and PDF (reportlab)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

from coverwatch.domain.time import parse_time
from coverwatch.formats.csvcells import safe_cell
from coverwatch.reports.supervision import DailyReport

__all__ = ["records_csv", "records_pdf"]

_STYLES = getSampleStyleSheet()
_CELL = _STYLES["BodyText"].clone("cell", fontSize=7.5, leading=9)


def records_csv(sections: dict[str, list[dict[str, Any]]]) -> bytes:
    """Every record with its section; columns are the union of the records' fields."""
    cols: list[str] = []
    for rows in sections.values():
        for r in rows:
            cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["section", *cols], extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for name, rows in sections.items():
        for r in rows:
            # A text cell a spreadsheet would run as a formula is quoted (OWASP).
            w.writerow({"section": name, **{k: "" if v is None else safe_cell(v)
                                            for k, v in r.items()}})
    return buf.getvalue().encode()


def _local(zone: ZoneInfo, value: Any) -> str:
    if isinstance(value, str) and len(value) > 18 and value[4] == "-" and "T" in value:
        t = parse_time(value)
        return _dt.datetime.fromtimestamp(t / 1e6, zone).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.0f}"
    return "" if value is None else str(value)


def records_pdf(title: str, report: DailyReport | None,
                sections: dict[str, list[dict[str, Any]]], timezone: str) -> bytes:
    zone = ZoneInfo(timezone)
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=landscape(A4), leftMargin=12 * mm,
                            rightMargin=12 * mm, topMargin=12 * mm, bottomMargin=12 * mm,
                            title=title, author="coverwatch")
    story: list[Any] = [Paragraph(title, _STYLES["Heading1"])]
    if report is not None:
        story.append(Paragraph(f"{_local(zone, _iso(report.since))} to "
                               f"{_local(zone, _iso(report.until))} ({timezone})",
                               _STYLES["BodyText"]))
    width = landscape(A4)[0] - 24 * mm
    for name, rows in sections.items():
        story.append(Paragraph(name[:1].upper() + name[1:], _STYLES["Heading2"]))
        if not rows:
            story.append(Paragraph("none", _STYLES["BodyText"]))
            continue
        cols = list(rows[0])
        data = [[Paragraph(f"<b>{c.replace('_', ' ')}</b>", _CELL) for c in cols]]
        data += [[Paragraph(_esc(_local(zone, r.get(c))), _CELL) for c in cols] for r in rows]
        t = Table(data, colWidths=[width / len(cols)] * len(cols), repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story.append(t)
    doc.build(story)
    return buf.getvalue()


def _iso(t_us: int) -> str:
    from coverwatch.domain.time import format_time

    return format_time(t_us)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
