"""The audit segment of an evidence pack follows the pack's event window (issue 23): a pack
over historic data carries the entries about its alerts, however long after their time
they were recorded, and a segment cut short in a re-signed pack is named by both
verifiers."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from collections.abc import Callable
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
    # No entry was recorded before the window: the segment starts at the chain's first, and
    # runs to the chain's last (the acknowledgement), which the tree head names.
    assert ids[0] == historic["before"] == 1 and entries[0]["prev_hash"] == "0" * 64
    assert ids[-1] == historic["ack"]
    head = orjson.loads(zipfile.ZipFile(io.BytesIO(historic["data"])).read("tree-head.json"))
    assert head["head"]["audit_last"] == {"id": entries[-1]["id"], "hash": entries[-1]["hash"]}
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
    assert any("the audit segment is whole at both ends" in n for n in check.notes)


def _resigned(data: bytes, key_path: Path, edit: Callable[[dict[str, bytes]], None]) -> bytes:
    """The pack with its members edited by ``edit``, re-signed with the site's own key."""
    z = zipfile.ZipFile(io.BytesIO(data))
    files = {n: z.read(n) for n in z.namelist()}
    edit(files)
    manifest = orjson.loads(files.pop("manifest.json"))
    body = {k: v for k, v in manifest.items() if k not in ("signature", "public_key", "key_id")}
    body["members"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        out.writestr("manifest.json", orjson.dumps(sign_document(body, load_signing_key(key_path))))
        for n, d in files.items():
            out.writestr(n, d)
    return buf.getvalue()


def _resigned_without(data: bytes, key_path: Path, drop: int) -> bytes:
    """The pack with audit entry ``drop`` (and its proof) removed, re-signed with the site's
    own key: an insider's edit."""
    def edit(files: dict[str, bytes]) -> None:
        files["audit.jsonl"] = b"".join(
            orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n"
            for e in _entries(data) if e["id"] != drop)
        proofs = orjson.loads(files["proofs.json"])
        proofs["audit"].pop(str(drop), None)  # entries after the window have none
        files["proofs.json"] = orjson.dumps(proofs)

    return _resigned(data, key_path, edit)


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


def _both(data: bytes, key_path: Path) -> list[tuple[bool, list[str], list[str]]]:
    trusted = load_signing_key(key_path).trusted
    return [(c.ok, c.problems, c.notes) for c in (verify_pack(data, trusted),
                                                   check_pack(data, trusted))]


def test_a_segment_cut_at_its_end_is_named(historic: dict[str, Any]) -> None:
    # The acknowledgement and a delivery at the tail go, with the entries of any alert
    # recorded only there: what is left still links, and alerts.json may be made to agree.
    entries = _entries(historic["data"])
    data = historic["data"]
    for e in entries[-2:]:
        data = _resigned_without(data, historic["key"], e["id"])
    end = entries[-3]["id"]
    for ok, problems, _ in _both(data, historic["key"]):
        assert not ok
        assert f"audit.jsonl: the audit segment ends at entry {end} " in "\n".join(problems)
        assert any("does not show it is the chain's last entry" in p for p in problems)


def test_a_segment_cut_at_its_start_is_named(historic: dict[str, Any]) -> None:
    # No entry was recorded before the window: the segment must start at the chain's first.
    data = _resigned_without(historic["data"], historic["key"], historic["before"])
    for ok, problems, _ in _both(data, historic["key"]):
        assert not ok
        assert any(p.startswith(f"audit.jsonl: the audit segment starts after the window's "
                                f"start (entry {historic['after']}") for p in problems), problems


def _old_head(files: dict[str, bytes], key_path: Path) -> None:
    """``tree-head.json`` with its head as signed before heads named ``audit_last``."""
    doc = orjson.loads(files["tree-head.json"])
    body = {k: v for k, v in doc["head"].items()
            if k not in ("signature", "public_key", "key_id", "audit_last")}
    doc["head"] = sign_document({**body, "v": 1}, load_signing_key(key_path))
    files["tree-head.json"] = orjson.dumps(doc)


@pytest.fixture
def unlinked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export proving every audit entry (as before entries after the window were proved by
    their links to ``audit_last``), so that the head can be swapped for an old one."""
    import coverwatch.evidence.pack as pack_module

    monkeypatch.setattr(pack_module, "_linked_from", lambda *a: None)


def test_a_pack_on_an_old_head_verifies_with_its_end_not_proved(
    unlinked: None, historic: dict[str, Any],
) -> None:
    data = _resigned(historic["data"], historic["key"],
                     lambda files: _old_head(files, historic["key"]))
    for ok, problems, notes in _both(data, historic["key"]):
        assert ok, problems
        assert any("the head does not show it is the chain's last entry: not proved whole"
                   in n for n in notes), notes
        assert not any("whole at both ends" in n for n in notes)


def test_entries_after_the_window_carry_no_proof_of_their_own(historic: dict[str, Any]) -> None:
    # Every entry was recorded after the window (on the import, and since): their links to
    # the head's audit_last prove them; one inclusion proof each would only swell the pack.
    z = zipfile.ZipFile(io.BytesIO(historic["data"]))
    proofs = orjson.loads(z.read("proofs.json"))
    entries = _entries(historic["data"])
    assert proofs["audit"] == {} and proofs["linked"] == {"audit": entries[0]["id"]}
    for ok, problems, notes in _both(historic["data"], historic["key"]):
        assert ok, problems
        assert any(f"{len(entries)} audit entries recorded after the window proved by their "
                   "links" in n for n in notes), notes


def test_a_later_entry_rewritten_with_its_tail_is_named(historic: dict[str, Any]) -> None:
    # An insider edits an entry after the window and recomputes the hashes after it: the
    # tail no longer ends at the head's audit_last, so nothing after the window is proved.
    from coverwatch.evidence.standalone import audit_entry_hash

    def edit(files: dict[str, bytes]) -> None:
        entries = _entries(historic["data"])
        prev = None
        for e in entries:
            if e["id"] == historic["after"]:
                e["details"] = {"edited": True}
            if prev is not None:
                e["prev_hash"] = prev
            e["hash"] = audit_entry_hash(e)
            prev = e["hash"]
        files["audit.jsonl"] = b"".join(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n"
                                        for e in entries)

    bad = _resigned(historic["data"], historic["key"], edit)
    for ok, problems, _ in _both(bad, historic["key"]):
        assert not ok
        assert any(p.startswith("proofs.json: leaves audit entries from") and
                   "does not end at the tree head's audit_last" in p for p in problems), problems
