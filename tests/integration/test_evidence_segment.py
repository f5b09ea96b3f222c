"""The audit segment of an evidence pack follows the pack's event window (issue 23): a pack
over historic data carries the entries about its alerts, however long after their time
they were recorded, and a segment cut short in a re-signed pack is named by both
verifiers."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from alertkit import raise_alerts

from coverwatch.clock import wall_clock_us
from coverwatch.domain.alerts import Alert
from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.evidence.anchors import sign_document
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.pack import export_pack, verify_pack
from coverwatch.evidence.standalone import check_pack
from coverwatch.storage import DeliveryRecord, open_store
from coverwatch.storage.versions import SiteVersion, save_versions

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
H = 3600 * US_PER_S


def _rows(t0: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows: list[dict[str, Any]] = [
        {"kind": "duty", "t_us": t0, "officer": f"O{i}", "on": True,
         "capabilities": "armed" if i % 2 else "", "source": "test"} for i in range(5)]
    rows += [{"kind": "flag", "t_us": t0, "flag": "open-hours", "on": True, "source": "test"},
             {"kind": "gate", "t_us": t0, "post": "main-gate", "open": True, "source": "test"}]
    for _ in range(600):
        rows.append({"kind": "fix", "t_us": t0 + rng.randrange(0, 4 * 3600) * US_PER_S,
                     "officer": f"O{rng.randrange(5)}", "x": rng.uniform(-60, 60),
                     "y": rng.uniform(-60, 60), "accuracy": 5.0, "source": "test"})
    return rows


@pytest.fixture
def historic(tmp_path: Path) -> dict[str, Any]:
    """Four hours of events timed 6 to 10 hours before they arrive (an import of a device's
    history), their alerts raised and notified on arrival and one acknowledged after; the
    pack is over the middle two hours, when no audit entry was recorded."""
    t0 = wall_clock_us() - 10 * H
    since, until = t0 + H, t0 + 3 * H
    store = open_store(None, tmp_path / "data")
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    save_versions(store, versions)
    before = store.append_audit("ann", "user.created", "user:zed", {})  # before the import
    store.append_events(_rows(t0))
    after = store.append_audit("ann", "device.added", "device:ph9", {})  # after it arrived
    raise_alerts(store, versions, t0 + 4 * H)
    mine = [a for a in store.load_alerts()
            if a["kind"] == "lapse" and since <= a["alert_at"] <= until]
    assert len(mine) >= 2, "the window should hold lapse alerts"
    alert = Alert.from_record(mine[0])
    store.record_deliveries([DeliveryRecord(alert.id, 0, "escalation", "role:supervisor", "sam",
                                            "mailto://***@example.org", True, None, 1,
                                            wall_clock_us())])
    alert.acknowledge("sam", "reviewed the import", wall_clock_us())
    ack = store.record_alert_event(alert.to_record(), actor="sam", action="alert.acknowledged")
    key_path = tmp_path / "data" / "keys" / "audit.key"
    data = export_pack(store, versions, load_signing_key(key_path), site="yard",
                       since=since, until=until)
    store.close()
    return {"data": data, "key": key_path, "since": since, "until": until, "alert": alert.id,
            "before": before.id, "after": after.id, "ack": ack.id,
            "window": [a["id"] for a in mine]}


def _entries(data: bytes) -> list[dict[str, Any]]:
    z = zipfile.ZipFile(io.BytesIO(data))
    return [orjson.loads(x) for x in z.read("audit.jsonl").splitlines() if x]


def test_a_pack_over_historic_data_carries_the_entries_about_it(
    historic: dict[str, Any],
) -> None:
    entries = _entries(historic["data"])
    # None was recorded in the window: chosen by wall clock alone, the segment was empty.
    assert not any(historic["since"] <= parse_time(e["at"]) <= historic["until"]
                   for e in entries)
    ids = [e["id"] for e in entries]
    assert ids == list(range(ids[0], ids[-1] + 1))  # contiguous
    # From the first entry after the events arrived to the acknowledgement; not before.
    assert ids[0] == historic["after"] and ids[-1] == historic["ack"]
    assert historic["before"] not in ids
    about = {(e["subject"], e["action"]) for e in entries}
    for alert_id in historic["window"]:
        assert (f"alert:{alert_id}", "alert.raised") in about
    subject = f"alert:{historic['alert']}"
    assert {(subject, "alert.acknowledged"), (subject, "notification.delivered")} <= about
    trusted = load_signing_key(historic["key"]).trusted
    check = verify_pack(historic["data"], trusted)
    assert check.ok, check.problems
    assert any("holds the raising, deliveries, acknowledgement and close of each of the "
               f"{len(historic['window'])} alert(s)" in n for n in check.notes), check.notes


def _resigned_without(data: bytes, key_path: Path, drop: int) -> bytes:
    """The pack with audit entry ``drop`` (and its proof) removed, re-signed with the site's
    own key: an insider's edit."""
    z = zipfile.ZipFile(io.BytesIO(data))
    files = {n: z.read(n) for n in z.namelist()}
    files["audit.jsonl"] = b"".join(
        orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n"
        for e in _entries(data) if e["id"] != drop)
    proofs = orjson.loads(files["proofs.json"])
    assert proofs["audit"].pop(str(drop), None) is not None
    files["proofs.json"] = orjson.dumps(proofs)
    manifest = orjson.loads(files.pop("manifest.json"))
    body = {k: v for k, v in manifest.items() if k not in ("signature", "public_key", "key_id")}
    body["members"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        out.writestr("manifest.json", orjson.dumps(sign_document(body, load_signing_key(key_path))))
        for n, d in files.items():
            out.writestr(n, d)
    return buf.getvalue()


def test_a_re_signed_pack_without_the_acknowledgement_is_named(
    historic: dict[str, Any],
) -> None:
    # The acknowledgement is the segment's last entry: dropping it leaves the links whole.
    bad = _resigned_without(historic["data"], historic["key"], historic["ack"])
    trusted = load_signing_key(historic["key"]).trusted
    want = f"lacks the acknowledgement of alert {historic['alert']} by sam"
    for problems in (verify_pack(bad, trusted).problems, check_pack(bad, trusted).problems):
        named = [p for p in problems if p.startswith("audit.jsonl: the segment")]
        assert len(named) == 1 and want in named[0], problems
        assert not any("entries" in p and "are missing" in p for p in problems)


def test_a_segment_cut_at_its_start_names_the_raising(historic: dict[str, Any]) -> None:
    entries = _entries(historic["data"])
    first_raised = next(e for e in entries if e["action"] == "alert.raised"
                        and e["subject"][6:] in historic["window"])
    data = historic["data"]
    for e in entries:  # everything up to and including the first raising goes
        data = _resigned_without(data, historic["key"], e["id"])
        if e["id"] == first_raised["id"]:
            break
    check = check_pack(data, load_signing_key(historic["key"]).trusted)
    assert any(f"lacks the raising of alert {first_raised['subject'][6:]}" in p
               for p in check.problems), check.problems
