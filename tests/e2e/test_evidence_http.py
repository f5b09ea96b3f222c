"""An auditor downloads an evidence pack over HTTP and it verifies on its own; the server's
anchors check out against the chain."""

from __future__ import annotations

from pathlib import Path

import orjson

from coverwatch.evidence.pack import verify_pack
from coverwatch.evidence.standalone import check_pack
from serverkit import YARD, base_settings, running_server


def test_auditor_downloads_a_pack_that_verifies(tmp_path: Path) -> None:
    with running_server(base_settings(YARD, tmp_path / "data")) as k:
        ctl = k.api_token("gateway", "ingest")
        auditor = k.user("ada", "auditor")
        since = k.clock.iso()
        k.post_events(ctl, [
            {"t": k.clock.iso(), "kind": "gate", "post": "main-gate", "open": True},
            {"t": k.clock.iso(), "kind": "duty", "officer": "U1", "on": True},
            {"t": k.clock.iso(), "kind": "fix", "officer": "U1", "x": 0, "y": 0},
        ])
        k.advance(120)
        until = k.clock.iso(-30)
        r = k.request(auditor, "GET", "/api/v1/evidence", params={"since": since,
                                                                    "until": until})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
        pem = k.request(auditor, "GET", "/api/v1/audit/public-key").text
        made = k.request(auditor, "POST", "/api/v1/audit/anchor")
        assert made.status_code == 200
        checked = k.request(auditor, "GET", "/api/v1/audit/anchored").json()
        bad = k.request(auditor, "GET", "/api/v1/evidence",
                        params={"since": until, "until": since})
    assert bad.status_code == 422
    assert checked["ok"] and checked["mac_checked"] and checked["anchors"] >= 1
    # The anchor came with a signed tree head of the site's log: audit entries and events.
    assert checked["sound"] and checked["tree_heads"]["heads"] >= 1, checked
    assert checked["tree_heads"]["leaves"] >= 4 and not checked["tree_heads"]["findings"]
    import base64

    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(pem.encode())
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    check = verify_pack(r.content, (base64.b64encode(raw).decode(),))
    assert check.ok, check.problems
    # The pack is proved against one of the server's own heads (beside its anchor file),
    # and every one of its events has an inclusion proof.
    (heads_path,) = (tmp_path / "data").rglob("tree-heads.jsonl")
    heads = [orjson.loads(line) for line in heads_path.read_bytes().splitlines() if line]
    alone = check_pack(r.content, (base64.b64encode(raw).decode(),), heads)
    assert alone.ok, alone.problems
    assert any("one of the" in n and "witnessed heads" in n for n in alone.notes), alone.notes
    assert "3 event(s) proved in the log" in " ".join(alone.notes), alone.notes


def test_replay_and_report_from_checkpoints_equal_full_evaluation(tmp_path: Path) -> None:
    with running_server(base_settings(YARD, tmp_path / "data")) as k:
        ctl = k.api_token("gateway", "ingest")
        sup = k.api_token("watch", "supervisor")  # a session would expire as the clock moves
        k.post_events(ctl, [
            {"t": k.clock.iso(), "kind": "gate", "post": "main-gate", "open": True},
            {"t": k.clock.iso(), "kind": "duty", "officer": "U1", "on": True},
        ])
        for i in range(80):  # a fix a minute, wandering off and back
            k.post_events(ctl, [{"t": k.clock.iso(), "kind": "fix", "officer": "U1",
                                 "x": (i % 7) * 6.0, "y": 0.0}])
            k.advance(60)
        # The tour watch steps on its own every 2 s and raises or resolves tour alerts up to
        # the horizon; step it here so it has nothing left to change between the two reads.
        assert k.svc.tours is not None
        k.call(k.svc.tours.step)
        at = k.clock.iso(-300)
        since = k.clock.iso(-1800)
        store = k.svc.store

        def both() -> tuple[dict[str, object], dict[str, object]]:
            replay = k.request(sup, "GET", "/api/v1/cover/at", params={"t": at}).json()
            report = k.request(sup, "GET", "/api/v1/report", params={"since": since}).json()
            return replay, report

        store.drop_checkpoints()
        full = both()
        assert "rules" in full[0] and "lapses" in full[1], full
        assert store.checkpoint_times(), "the first run should have saved checkpoints"
        resumed = both()
    assert resumed == full


def test_back_dated_flags_through_the_api_are_audited_marked_and_named(tmp_path: Path) -> None:
    """A supervisor posts two flag events timed before they arrive: audited, marked in the
    pack with their arrival, and the alerts raised at the time no longer match the lapses."""
    with running_server(base_settings(YARD, tmp_path / "data")) as k:
        ctl = k.api_token("gateway", "ingest")
        sup = k.api_token("watch", "supervisor")
        auditor = k.user("ada", "auditor")
        since = k.clock.iso()
        opened = k.clock.iso(1)
        k.post_events(ctl, [
            {"t": opened, "kind": "flag", "flag": "open-hours", "on": True},
            {"t": k.clock.iso(1), "kind": "duty", "officer": "U1", "on": True},
            {"t": k.clock.iso(1), "kind": "fix", "officer": "U1", "x": 0, "y": 0},
        ])
        for _ in range(12):
            k.advance(60)
            k.post_events(ctl, [{"t": k.clock.iso(), "kind": "fix", "officer": "U1",
                                 "x": 0, "y": 0}])
        until = k.clock.iso(-30)
        honest = k.request(auditor, "GET", "/api/v1/evidence",
                           params={"since": since, "until": until})
        assert honest.status_code == 200, honest.text
        r = k.post_events(sup, [
            {"t": k.clock.iso(-12 * 60 + 2), "kind": "flag", "flag": "open-hours", "on": False},
            {"t": k.clock.iso(-12 * 60 + 3), "kind": "flag", "flag": "open-hours", "on": False}])
        assert r.status_code == 200, r.text
        forged = k.request(auditor, "GET", "/api/v1/evidence",
                           params={"since": since, "until": until})
        entries = k.svc.store.audit_entries(limit=1000)
    assert verify_pack(honest.content).ok, verify_pack(honest.content).problems
    (audited,) = [e for e in entries if e.action == "events.back-dated"]
    assert audited.actor == "token:watch" and audited.details["count"] == 2
    import io
    import zipfile

    z = zipfile.ZipFile(io.BytesIO(forged.content))
    rows = [orjson.loads(x) for x in z.read("events.jsonl").splitlines()]
    back = [r for r in rows if r["kind"] == "flag" and not r["on"]]
    assert len(back) == 2 and all(r["received_us"] - r["t_us"] > 600_000_000 for r in back)
    # The audit segment follows the window, not the server's wall clock (here years apart
    # from the fake clock's): the entry about the back-dated events is carried.
    segment = [orjson.loads(x) for x in z.read("audit.jsonl").splitlines() if x]
    assert audited.id in [e["id"] for e in segment]
    import shutil
    import subprocess

    if shutil.which("pdftotext"):  # the PDF lists them with their arrival
        (tmp_path / "forged.pdf").write_bytes(z.read("report.pdf"))
        text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "forged.pdf"), "-"],
                              capture_output=True, check=True).stdout.decode()
        late = text[text.index("Events that arrived late or back-dated"):]
        assert late.count("open-hours") == 2, late[:1500]
    check = verify_pack(forged.content)
    named = [p for p in check.problems if p.startswith("alerts.json: lapse alert")]
    assert named and all("arrived late or back-dated" in p for p in named), check.problems


def test_the_report_marks_purged_spans_and_leaves_them_out_of_the_share_covered(
    tmp_path: Path,
) -> None:
    from coverwatch.evidence.retention import DAY_US, purge_now, set_retention_days

    with running_server(base_settings(YARD, tmp_path / "data")) as k:
        ctl = k.api_token("gateway", "ingest")
        sup = k.api_token("watch", "supervisor")
        start = k.clock()
        k.post_events(ctl, [
            {"t": k.clock.iso(), "kind": "gate", "post": "main-gate", "open": True},
            {"t": k.clock.iso(), "kind": "duty", "officer": "U1", "on": True},
            {"t": k.clock.iso(), "kind": "flag", "flag": "open-hours", "on": True},
        ])
        for _ in range(60):
            k.post_events(ctl, [{"t": k.clock.iso(), "kind": "fix", "officer": "U1",
                                 "x": 0.0, "y": 0.0}])
            k.advance(60)
        store = k.svc.store
        set_retention_days(store, 1, "ann", "yard")
        cut = start + 30 * 60 * 1_000_000  # the first half hour's positions go
        assert purge_now(store, "server", now=cut + DAY_US)
        since = k.clock.iso(-55 * 60)
        report = k.request(sup, "GET", "/api/v1/report", params={"since": since}).json()
    assert report["no_data"], report
    assert all(s["note"] == "no data (purged)" and s["purges"] for s in report["no_data"])
    # No lapse is derived where the positions are missing (the pack's rule): the report's
    # lapses stop at each span and start again after it.
    from coverwatch.domain.time import parse_time

    assert report["lapses"], report  # one armed officer short all along: a lapse, cut
    assert any(lp.get("purged_edge") for lp in report["lapses"]), report["lapses"]
    for span in report["no_data"]:
        a, b = parse_time(span["start"]), parse_time(span["end"])
        assert not [lp for lp in report["lapses"] if parse_time(lp["start"]) < b and (
            lp["end"] is None or parse_time(lp["end"]) > a)], (span, report["lapses"])
    gate = [r for r in report["rules"] if r["no_data_s"] > 0]
    assert gate, report["rules"]
    assert all(r["cover_pct"] is None or 0.0 <= r["cover_pct"] <= 100.0 for r in gate)
