"""Supervision records: time in area is exact on a hand-made track; the daily activity
report names late and missed orders acknowledgements, duty changes and supervisor actions,
and comes out as CSV and PDF, from the library and the CLI."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.domain.briefing import Shift
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.supervision import daily_report, time_in_area
from coverwatch.reports.supervision_out import records_csv, records_pdf
from coverwatch.storage import Store, open_store
from coverwatch.storage.briefing import OrdersVersion
from coverwatch.storage.versions import SiteVersion, save_versions

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
T0 = parse_time("2027-03-10T09:00:00Z")  # 09:00 in London (GMT in March before the switch)


def _fill(store: Store) -> list[SiteVersion]:
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    save_versions(store, versions)
    s = US_PER_S
    store.append_events([
        {"kind": "duty", "t_us": T0, "officer": "A1", "on": True, "source": "t"},
        {"kind": "fix", "t_us": T0, "officer": "A1", "x": 0.0, "y": 0.0, "source": "t"},
        {"kind": "fix", "t_us": T0 + 10 * s, "officer": "A1", "x": 1.0, "y": 0.0, "source": "t"},
        {"kind": "fix", "t_us": T0 + 20 * s, "officer": "A1", "x": 2.0, "y": 0.0, "source": "t"},
        {"kind": "fix", "t_us": T0 + 5 * s, "officer": "B1", "x": 900.0, "y": 900.0,
         "source": "t"},
        {"kind": "duty", "t_us": T0 + 3600 * s, "officer": "A1", "on": False, "source": "t"},
    ])
    store.record_orders_versions([OrdersVersion("main-gate", "v1", T0 - 86_400 * s,
                                                "Stand at the gate.", None)], actor="ann")
    store.add_shifts([Shift(0, "A1", T0, T0 + 8 * 3600 * s, post="main-gate"),
                      Shift(0, "B1", T0, T0 + 8 * 3600 * s, post="main-gate")], actor="sam")
    store.record_acknowledgement("A1", "main-gate", "v1", at_us=T0 + 120 * s, via="session",
                                 user="A1")
    store.append_audit("sam", "alert.acknowledged", "alert:lapse-1",
                       {"post": "main-gate", "acknowledgement_note": "sent B1"},
                       at=format_time(T0 + 600 * s))
    # Later changes carry the acknowledgement note in their record: shown once, not again.
    store.append_audit("engine", "alert.escalated", "alert:lapse-1",
                       {"post": "main-gate", "acknowledgement_note": "sent B1"},
                       at=format_time(T0 + 660 * s))
    store.append_audit("sam", "alert.closed", "alert:lapse-1",
                       {"post": "main-gate", "acknowledgement_note": "sent B1",
                        "close_note": "B1 at the gate"}, at=format_time(T0 + 900 * s))
    return versions


def test_time_in_area_counts_each_fix_until_the_next_or_stale(store: Store) -> None:
    _fill(store)
    site = load_site(YARD)
    rows = time_in_area(site, store, T0, T0 + 100 * US_PER_S)
    # 10 s + 10 s + 30 s (stale after 30 s) at the main gate; B1 is nowhere near a post.
    assert [(r["officer"], r["post"], r["seconds"]) for r in rows] == [("A1", "main-gate", 50.0)]


def test_daily_report_sections(store: Store) -> None:
    versions = _fill(store)
    site = load_site(YARD)
    rep = daily_report(store, versions, site, "2027-03-10")
    acks = {r["officer"]: r["state"] for r in rep.sections["orders acknowledgements"]}
    assert acks == {"A1": "late", "B1": "missed"}
    assert [r["change"] for r in rep.sections["duty"]] == ["on", "off"]
    # The roster was entered today (wall clock), not on that day: only the acknowledgement.
    assert [(a["who"], a["action"], a["note"]) for a in rep.sections["supervisor actions"]] == [
        ("sam", "alert.acknowledged", "sent B1"), ("sam", "alert.closed", "B1 at the gate")]
    assert [(a["who"], a["action"], a["note"]) for a in rep.sections["automatic actions"]] == [
        ("engine", "alert.escalated", "")]
    # A1's time on post as stints with times: 09:00:00 to 09:00:50 (the last fix goes stale).
    assert [(r["officer"], r["post"], r["from"], r["until"]) for r in rep.sections["stints"]] == [
        ("A1", "main-gate", format_time(T0), format_time(T0 + 50 * US_PER_S))]
    table = list(csv.DictReader(io.StringIO(records_csv(rep.sections).decode())))
    assert {r["section"] for r in table} >= {"duty", "time on post", "orders acknowledgements"}
    assert records_pdf("Daily", rep, rep.sections, rep.timezone).startswith(b"%PDF")
    shift = daily_report(store, versions, site, "2027-03-10", "08:00-09:00")
    assert shift.sections["duty"] == []  # the day's duty starts at 09:00


def test_cli_records(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store(None, data)
    _fill(store)
    store.close()
    runner = CliRunner()
    out = tmp_path / "daily.pdf"
    r = runner.invoke(app, ["records", "daily", "--date", "2027-03-10", "--out", str(out),
                            "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(b"%PDF")
    tia = tmp_path / "tia.csv"
    r = runner.invoke(app, ["records", "time-in-area", "--since", format_time(T0), "--until",
                            format_time(T0 + 100 * US_PER_S), "--out", str(tia),
                            "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert "A1,main-gate,50.0" in tia.read_text()
    bad = runner.invoke(app, ["records", "daily", "--date", "10/03/2027", "--out", str(out),
                              "--data-dir", str(data)])
    assert bad.exit_code == 2


def test_an_alert_closed_directly_is_not_shown_as_acknowledged(store: Store) -> None:
    """Closing an alert nobody owned records the closer as its owner at that instant: the
    daily report says it was not acknowledged, and shows the close note once, against the
    close (as the pack's PDF does)."""
    from coverwatch.domain.alerts import Alert, alert_id_for

    versions = _fill(store)
    at = T0 + 600 * US_PER_S
    sos = Alert(id=alert_id_for("sos", "A1", "sos", at), kind="sos", post="A1", rule="sos",
                lapse_start=at, alert_at=at, count=0, need=1)
    store.record_alert_event(sos.to_record(), actor="device", action="alert.raised")
    sos.close("kim", "false alarm, checked by phone", at + 60 * US_PER_S)
    store.record_alert_event(sos.to_record(), actor="kim", action="alert.closed")
    fall = Alert(id=alert_id_for("fall", "B1", "fall", at), kind="fall", post="B1",
                 rule="fall", lapse_start=at, alert_at=at, count=0, need=1)
    store.record_alert_event(fall.to_record(), actor="device", action="alert.raised")
    fall.acknowledge("sam", "sent A1", at + 30 * US_PER_S)
    store.record_alert_event(fall.to_record(), actor="sam", action="alert.acknowledged")
    fall.close("sam", "B1 was fine", at + 90 * US_PER_S)
    store.record_alert_event(fall.to_record(), actor="sam", action="alert.closed")
    rep = daily_report(store, versions, load_site(YARD), "2027-03-10")
    [row] = [r for r in rep.sections["alerts"] if r["kind"] == "sos"]
    assert (row["acknowledged_by"], row["acknowledged_at"], row["note"]) == (
        "not acknowledged (closed directly)", None, "")
    assert (row["closed_by"], row["close_note"]) == ("kim", "false alarm, checked by phone")
    [acked] = [r for r in rep.sections["alerts"] if r["kind"] == "fall"]
    assert (acked["acknowledged_by"], acked["note"], acked["closed_by"], acked["close_note"]) \
        == ("sam", "sent A1", "sam", "B1 was fine")  # acknowledged first: each note once
