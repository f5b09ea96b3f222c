"""Who was notified, in the evidence pack and the daily activity report: from the recorded
deliveries, a failed attempt shown as failed and never as notified; the pack carries the
deliveries it reports (``deliveries.json``), and verify holds them to the audit log."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
from alertkit import raise_alerts

from coverwatch.clock import wall_clock_us
from coverwatch.domain.alerts import Alert, alert_id_for
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.evidence.anchors import sign_document
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.pack import export_pack, verify_pack
from coverwatch.evidence.pdf import alert_rows, delivery_table
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.supervision import daily_report
from coverwatch.reports.supervision_out import records_csv, records_pdf
from coverwatch.storage import DeliveryRecord, Store, open_store
from coverwatch.storage.versions import SiteVersion, save_versions

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
S = US_PER_S


def _alert(store: Store, at: int) -> Alert:
    alert = Alert(id=alert_id_for("lapse", "main-gate", "armed-cover", at - 60 * S),
                  kind="lapse", post="main-gate", rule="armed-cover",
                  lapse_start=at - 60 * S, alert_at=at, count=0, need=2)
    store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
    store.record_deliveries([
        DeliveryRecord(alert.id, 0, "escalation", "role:supervisor", "sam",
                       "mailto://***@example.org", True, None, 1, at + 1 * S),
        DeliveryRecord(alert.id, 0, "escalation", "role:supervisor", "kim",
                       "mailto://***@example.org", False,
                       "the notification service did not accept it", 3, at + 2 * S),
    ])
    alert.acknowledge("sam", "on my way", at + 90 * S)
    store.record_alert_event(alert.to_record(), actor="sam", action="alert.acknowledged")
    return alert


def _store(tmp_path: Path) -> tuple[Store, list[SiteVersion]]:
    store = open_store(None, tmp_path / "data")
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    save_versions(store, versions)
    return store, versions


def _pack(tmp_path: Path) -> tuple[bytes, Path]:
    store, versions = _store(tmp_path)
    # The deliveries are audited at the wall clock: the window holds now, so the pack's
    # audit segment holds those entries too.
    now = wall_clock_us()
    # the lapse the alert is about: the yard opens with nobody on duty
    store.append_events([{"kind": "flag", "t_us": now - 660 * S, "flag": "open-hours",
                          "on": True, "source": "test"}])
    raise_alerts(store, versions, now + 3600 * S)
    _alert(store, now - 600 * S)
    key_path = tmp_path / "data" / "keys" / "audit.key"
    try:
        data = export_pack(store, versions, load_signing_key(key_path), site="yard",
                           since=now - 3600 * S, until=now + 3600 * S)
    finally:
        store.close()
    return data, key_path


def test_pack_says_who_was_notified_and_who_was_not(tmp_path: Path) -> None:
    data, key_path = _pack(tmp_path)
    check = verify_pack(data, load_signing_key(key_path).trusted)
    assert check.ok, check.problems
    z = zipfile.ZipFile(io.BytesIO(data))
    assert "deliveries.json" in orjson.loads(z.read("manifest.json"))["members"]
    sent = orjson.loads(z.read("deliveries.json"))
    assert [(d["person"], d["outcome"]) for d in sent] == [("sam", "delivered"),
                                                          ("kim", "failed")]
    alerts = [a for a in orjson.loads(z.read("alerts.json")) if a["rule"] == "armed-cover"]
    zone = ZoneInfo("Europe/London")
    (row,) = alert_rows(alerts, sent, zone)
    assert row[4] == "sam (level 1)"  # notified: kim's attempt failed, so not kim
    assert row[5].startswith("sam ") and row[6] == "on my way"
    table = delivery_table(alerts, sent, zone)
    assert [(r[1], r[3], r[5]) for r in table] == [
        ("1", "sam", "delivered (1 attempt)"),
        ("1", "kim", "FAILED: the notification service did not accept it (3 attempts)")]
    if shutil.which("pdftotext"):  # the PDF itself, where poppler is installed
        pdf = tmp_path / "report.pdf"
        pdf.write_bytes(z.read("report.pdf"))
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "Who was notified" in text and "sam (level 1)" in text
        assert "FAILED: the notification" in text  # the cell wraps after it


def test_a_failed_delivery_shown_as_delivered_is_refused(tmp_path: Path) -> None:
    data, key_path = _pack(tmp_path)
    z = zipfile.ZipFile(io.BytesIO(data))
    sent = orjson.loads(z.read("deliveries.json"))
    sent[1]["outcome"], sent[1]["error"] = "delivered", None
    forged = orjson.dumps(sent) + b"\n"
    manifest = orjson.loads(z.read("manifest.json"))
    manifest["members"]["deliveries.json"] = hashlib.sha256(forged).hexdigest()
    body = {k: v for k, v in manifest.items() if k not in ("signature", "public_key", "key_id")}
    key = load_signing_key(key_path)  # even re-signed with the site's own key
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for n in z.namelist():
            out.writestr(n, forged if n == "deliveries.json" else
                         orjson.dumps(sign_document(body, key)) if n == "manifest.json"
                         else z.read(n))
    check = verify_pack(buf.getvalue(), key.trusted)
    assert not check.ok
    # Named by the transparency log's inclusion proof (the delivery changed after it was
    # logged) or, for packs without one, against the audit log ("says failed").
    assert any(p.startswith("deliveries.json") and ("says failed" in p or (
        "delivery 2 " in p and "inclusion proof fails" in p)) for p in check.problems), \
        check.problems


def test_daily_report_lists_each_delivery_and_never_a_failed_one_as_notified(
    tmp_path: Path,
) -> None:
    store, versions = _store(tmp_path)
    at = 1_800_000_000 * S  # 2027-01-15 08:00 UTC, winter: London is on UTC
    _alert(store, at)
    try:
        rep = daily_report(store, versions, load_site(YARD), "2027-01-15")
    finally:
        store.close()
    (alert,) = rep.sections["alerts"]
    assert alert["notified"] == "sam (level 1)"
    assert alert["not_reached"] == "kim (level 1: the notification service did not accept it)"
    assert (alert["acknowledged_by"], alert["note"]) == ("sam", "on my way")
    rows = [r for r in csv.DictReader(io.StringIO(records_csv(rep.sections).decode()))
            if r["section"] == "notifications"]
    assert [(r["person"], r["outcome"], r["level"], r["target"], r["sent_at"]) for r in rows] == [
        ("sam", "delivered", "1", "role:supervisor", format_time(at + 1 * S)),
        ("kim", "failed", "1", "role:supervisor", format_time(at + 2 * S))]
    assert records_pdf("Daily", rep, rep.sections, rep.timezone).startswith(b"%PDF")
