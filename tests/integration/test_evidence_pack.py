"""Evidence packs: exported, verified on their own, and refused when any byte of a part changes."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path

import orjson
import pytest
from alertkit import raise_alerts
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.evidence.anchors import sign_document
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.pack import export_pack, verify_pack
from coverwatch.reports.history import recompute
from coverwatch.storage import Store, open_store
from coverwatch.storage.versions import SiteVersion, save_versions

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
T0 = 1_800_000_000 * US_PER_S


def _fill(store: Store) -> list[SiteVersion]:
    rng = random.Random(7)
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    save_versions(store, versions)
    rows: list[dict[str, object]] = [
        {"kind": "duty", "t_us": T0, "officer": f"O{i}", "on": True,
         "capabilities": "armed" if i % 2 else "", "source": "test"} for i in range(5)]
    rows += [{"kind": "flag", "t_us": T0, "flag": "open-hours", "on": True, "source": "test"},
             {"kind": "gate", "t_us": T0, "post": "main-gate", "open": True, "source": "test"}]
    for k in range(600):
        rows.append({"kind": "fix", "t_us": T0 + rng.randrange(0, 4 * 3600) * US_PER_S,
                     "officer": f"O{rng.randrange(5)}", "x": rng.uniform(-60, 60),
                     "y": rng.uniform(-60, 60), "accuracy": 5.0, "source": "test", "raw": k})
    store.append_events(rows)
    raise_alerts(store, versions, T0 + 4 * 3600 * US_PER_S)
    store.append_audit("ann", "site.applied", "yard", {"class": "weaker", "approval": "approver",
                                                       "reason": "fewer officers at night"},
                       at=format_time(T0 + 2 * 3600 * US_PER_S))
    return versions


@pytest.fixture
def pack(tmp_path: Path) -> tuple[bytes, Store, list[SiteVersion], Path]:
    store = open_store(None, tmp_path / "data")
    versions = _fill(store)
    key_path = tmp_path / "data" / "keys" / "audit.key"
    data = export_pack(store, versions, load_signing_key(key_path), site="yard",
                       since=T0 + 3600 * US_PER_S, until=T0 + 3 * 3600 * US_PER_S)
    yield data, store, versions, key_path
    store.close()


def test_pack_verifies_and_its_lapses_are_the_reports(
    pack: tuple[bytes, Store, list[SiteVersion], Path],
) -> None:
    data, store, versions, key_path = pack
    check = verify_pack(data, load_signing_key(key_path).trusted)
    assert check.ok, check.problems
    lapses = orjson.loads(zipfile.ZipFile(io.BytesIO(data)).read("lapses.json"))
    since, until = T0 + 3600 * US_PER_S, T0 + 3 * 3600 * US_PER_S
    full = recompute(store, versions, until=until, since=since, checkpoints=False)
    assert lapses, "the window should hold lapses to compare"
    assert [(lp["post"], lp["rule"], lp["start"], lp["clipped_start"]) for lp in lapses] == [
        (lp.post, lp.rule, format_time(max(lp.start, since)), lp.start < since)
        for lp in full.lapses]
    assert [lp["end"] for lp in lapses] == [format_time(until if lp.end is None else lp.end)
                                            for lp in full.lapses]
    # The day's activity report is in the pack, with its stints per officer.
    (day,) = orjson.loads(zipfile.ZipFile(io.BytesIO(data)).read("daily-reports.json"))
    assert day["day"] == "2027-01-15" and day["sections"]["stints"]
    assert {r["officer"] for r in day["sections"]["stints"]} <= {f"O{i}" for i in range(5)}


def _rezip(data: bytes, name: str, new: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in src.namelist():
            z.writestr(n, new if n == name else src.read(n))
    return buf.getvalue()


@pytest.mark.parametrize("member", [
    "report.pdf", "events.jsonl", "rule-versions.json", "engine-state.json", "lapses.json",
    "alerts.json", "deliveries.json", "orders.json", "roster.json", "audit.jsonl",
    "audit-anchor.json", "manifest.json",
])
def test_any_edited_byte_fails_naming_the_part(
    pack: tuple[bytes, Store, list[SiteVersion], Path], member: str,
) -> None:
    data, _, _, key_path = pack
    body = bytearray(zipfile.ZipFile(io.BytesIO(data)).read(member))
    i = len(body) // 2
    body[i] = (body[i] + 1) % 256
    check = verify_pack(_rezip(data, member, bytes(body)), load_signing_key(key_path).trusted)
    assert not check.ok
    assert any(p.startswith(member) for p in check.problems), check.problems


def test_lapses_edited_and_re_signed_with_another_key_are_refused(
    pack: tuple[bytes, Store, list[SiteVersion], Path], tmp_path: Path,
) -> None:
    data, _, _, key_path = pack
    z = zipfile.ZipFile(io.BytesIO(data))
    lapses = orjson.loads(z.read("lapses.json"))
    forged = orjson.dumps(lapses[1:]) + b"\n"  # hide the first lapse
    manifest = orjson.loads(z.read("manifest.json"))
    manifest["members"]["lapses.json"] = hashlib.sha256(forged).hexdigest()
    body = {k: v for k, v in manifest.items() if k not in ("signature", "public_key", "key_id")}
    other = load_signing_key(tmp_path / "mallory" / "k")
    resigned = orjson.dumps(sign_document(body, other))
    bad = _rezip(_rezip(data, "lapses.json", forged), "manifest.json", resigned)
    trusted = verify_pack(bad, load_signing_key(key_path).trusted)
    assert not trusted.ok and any("untrusted key" in p for p in trusted.problems)
    # Even trusting whatever key signed it, the alert raised for it gives the lie to it.
    alone = verify_pack(bad)
    hidden = lapses[0]
    named = [p for p in alone.problems if p.startswith("alerts.json: lapse alert ")
             and f"({hidden['post']} / {hidden['rule']}, lapse from" in p and "has no lapse" in p]
    assert not alone.ok and len(named) == 1, alone.problems


def test_cli_export_and_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVERWATCH_AUDIT_KEY_FILE", raising=False)
    data_dir = tmp_path / "data"
    store = open_store(None, data_dir)
    _fill(store)
    store.close()
    out = tmp_path / "pack.zip"
    runner = CliRunner()
    r = runner.invoke(app, ["evidence", "export", "--since", format_time(T0),
                            "--until", format_time(T0 + 2 * 3600 * US_PER_S), "--post",
                            "main-gate", "--out", str(out), "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    keys = runner.invoke(app, ["audit", "keys", "--data-dir", str(data_dir)])
    pub = tmp_path / "pub.pem"
    pub.write_text(keys.stdout)
    ok = runner.invoke(app, ["evidence", "verify", str(out), "--public-key", str(pub)])
    assert ok.exit_code == 0 and "lapse(s) confirmed" in ok.stdout, ok.output
    broken = _rezip(out.read_bytes(), "events.jsonl", b"")
    out.write_bytes(broken)
    bad = runner.invoke(app, ["evidence", "verify", str(out), "--public-key", str(pub)])
    assert bad.exit_code == 1 and "events.jsonl" in bad.stdout


def _resign(data: bytes, key_path: Path, changed: dict[str, bytes | None]) -> bytes:
    """The pack with members changed (None: removed), re-signed with the site's own key."""
    src = zipfile.ZipFile(io.BytesIO(data))
    manifest = orjson.loads(src.read("manifest.json"))
    body = {k: v for k, v in manifest.items() if k not in ("signature", "public_key", "key_id")}
    for name, new in changed.items():
        if new is None:
            body["members"].pop(name)
        else:
            body["members"][name] = hashlib.sha256(new).hexdigest()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("manifest.json", orjson.dumps(sign_document(body, load_signing_key(key_path))))
        for n in src.namelist():
            if n != "manifest.json" and changed.get(n, b"") is not None:
                z.writestr(n, changed.get(n) or src.read(n))
    return buf.getvalue()


H = 3600 * US_PER_S


def _pdf_text(pdf: bytes) -> str:
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return " ".join(subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True,
                                   check=True).stdout.decode().split())


def _purged_pack(tmp_path: Path, since: int, until: int) -> tuple[bytes, Store, Path]:
    from coverwatch.evidence.retention import DAY_US, purge_now, set_retention_days

    store = open_store(None, tmp_path / "data")
    _fill(store)
    set_retention_days(store, 1, "ann", "yard")
    assert purge_now(store, "server", now=T0 + 2 * H + DAY_US)  # fixes before T0+2h go
    key_path = tmp_path / "data" / "keys" / "audit.key"
    data = export_pack(store, [SiteVersion(0, YARD.read_text(encoding="utf-8"))],
                       load_signing_key(key_path), site="yard", since=since, until=until)
    return data, store, key_path


def test_purged_history_invents_no_lapse_and_is_named(tmp_path: Path) -> None:
    from coverwatch.evidence.window import run_window

    data, store, key_path = _purged_pack(tmp_path, T0 + H, T0 + 2 * H)
    z = zipfile.ZipFile(io.BytesIO(data))
    files = {n: z.read(n) for n in z.namelist()}
    purges = orjson.loads(files["purges.json"])
    assert [(p["what"], p["before_us"], p["rule"], p["audit"]["action"])
            for p in purges["records"]] == [
        ("events:fix", T0 + 2 * H, "retention.positions_days=1.0", "retention.purged")]
    assert [(s["start_us"], s["end_us"]) for s in purges["no_data"]] == [(T0 + H, T0 + 2 * H)]
    assert orjson.loads(files["lapses.json"]) == []
    # Without the purge declared, the same events would invent lapses over the whole window.
    invented, _ = run_window(orjson.loads(files["rule-versions.json"]),
                             orjson.loads(files["engine-state.json"]),
                             [orjson.loads(x) for x in files["events.jsonl"].splitlines()],
                             T0 + H, T0 + 2 * H)
    assert invented and all(lp["end_us"] == T0 + 2 * H for lp in invented)
    check = verify_pack(data, load_signing_key(key_path).trusted)
    assert check.ok, check.problems
    assert any("1 purge record(s) named" in n for n in check.notes), check.notes
    text = _pdf_text(files["report.pdf"])
    assert "no data: purged" in text and "retention.positions_days=1" in text
    # The whole window is purged: no share covered is claimed for it.
    assert "no data (purged) in this window" in " ".join(text.split())
    assert "% covered" not in text
    # An examiner's copy without the purge record: named, even re-signed with the site's key.
    hidden = orjson.dumps({"records": [], "no_data": purges["no_data"]})
    check = verify_pack(_resign(data, key_path, {"purges.json": hidden}))
    assert any(p.startswith("purges.json: the span without data") for p in check.problems), \
        check.problems
    # Without purges.json, and lapses.json re-derived to match: the lapses have no alerts.
    resigned = _resign(data, key_path, {"purges.json": None,
                                        "lapses.json": orjson.dumps(invented)})
    check = verify_pack(resigned)
    assert any(p.startswith(("lapses.json: the lapse at", "alerts.json: lapse alert"))
               for p in check.problems), check.problems
    store.close()


def test_purge_inside_a_window_cuts_lapses_at_its_edge(tmp_path: Path) -> None:
    data, store, key_path = _purged_pack(tmp_path, T0 + H, T0 + 3 * H)
    z = zipfile.ZipFile(io.BytesIO(data))
    spans = orjson.loads(z.read("purges.json"))["no_data"]
    assert [(s["start_us"], s["end_us"]) for s in spans] == [(T0 + H, T0 + 2 * H + 30 * US_PER_S)]
    lapses = orjson.loads(z.read("lapses.json"))
    assert lapses and all(lp["start_us"] >= spans[0]["end_us"] for lp in lapses)
    check = verify_pack(data, load_signing_key(key_path).trusted)
    assert check.ok, check.problems
    # The daily report (in the pack, and `records daily`) marks the purged part of its day;
    # the PDF leaves that hour out of the share covered, and says so.
    # Its span is the pack's, stale_after_s included, and it derives no lapse in it.
    [day] = orjson.loads(z.read("daily-reports.json"))
    assert [(p["until"], p["note"]) for p in day["sections"]["no data (purged)"]] == [
        (spans[0]["end"], "no data (purged)")]
    daily = day["sections"]["lapses"]
    assert daily and not any(
        parse_time(lp["start"]) < spans[0]["end_us"] and (
            lp["end"] is None or parse_time(lp["end"]) > spans[0]["start_us"]) for lp in daily)
    assert any(lp.get("purged_edge") for lp in daily)  # it was cut there, not left out
    assert "(no data (purged) for 1.0 h: left out)" in " ".join(
        _pdf_text(z.read("report.pdf")).split())
    store.close()


def test_lapse_alerts_removed_or_back_dated_flags_are_named(
    pack: tuple[bytes, Store, list[SiteVersion], Path],
) -> None:
    data, store, versions, key_path = pack
    alerts = orjson.loads(zipfile.ZipFile(io.BytesIO(data)).read("alerts.json"))
    assert sum(a["kind"] == "lapse" for a in alerts) >= 2
    kept = orjson.dumps([a for a in alerts if a["kind"] != "lapse"])
    check = verify_pack(_resign(data, key_path, {"alerts.json": kept}))
    assert sum("yet no alert was raised" in p for p in check.problems) >= 2, check.problems
    # Two flag events posted later with an earlier time: the history changes, the alerts
    # raised at the time do not, and verify names the difference and the late events.
    store.append_events([{"kind": "flag", "t_us": T0 + 3600 * US_PER_S + k, "flag": "open-hours",
                          "on": False, "source": "api", "late": True} for k in (0, 1)])
    late = export_pack(store, versions, load_signing_key(key_path), site="yard",
                       since=T0 + 3600 * US_PER_S, until=T0 + 3 * 3600 * US_PER_S)
    check = verify_pack(late, load_signing_key(key_path).trusted)
    named = [p for p in check.problems if p.startswith("alerts.json: lapse alert")]
    assert named and all("arrived late or back-dated" in p for p in named), check.problems


def test_the_pdf_is_rendered_from_the_pack_and_a_replaced_one_is_named(
    pack: tuple[bytes, Store, list[SiteVersion], Path],
) -> None:
    data, store, versions, key_path = pack
    again = export_pack(store, versions, load_signing_key(key_path), site="yard",
                        since=T0 + 3600 * US_PER_S, until=T0 + 3 * 3600 * US_PER_S)
    pdf = zipfile.ZipFile(io.BytesIO(data)).read("report.pdf")
    assert zipfile.ZipFile(io.BytesIO(again)).read("report.pdf") == pdf  # no wall clock
    check = verify_pack(data, load_signing_key(key_path).trusted)
    assert "report.pdf re-rendered from the pack's data: identical" in check.notes
    other = export_pack(store, versions, load_signing_key(key_path), site="yard",
                        since=T0 + 3600 * US_PER_S, until=T0 + 2 * 3600 * US_PER_S)
    replaced = _resign(data, key_path, {
        "report.pdf": zipfile.ZipFile(io.BytesIO(other)).read("report.pdf")})
    check = verify_pack(replaced)
    assert check.problems == ["report.pdf: differs from the report the pack's data renders: "
                              "it was replaced or edited"], check.problems


def test_a_delivery_recorded_during_export_does_not_break_the_pack(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Export reads every record from one snapshot: a delivery (and its audit entry)
    recorded between its reads of deliveries and of the audit log is in neither."""
    from coverwatch.evidence import pack as pack_module
    from coverwatch.storage import DeliveryRecord

    versions = _fill(store)
    since, until = T0 + 3600 * US_PER_S, T0 + 3 * 3600 * US_PER_S
    alert = next(a for a in store.load_alerts() if since <= a["alert_at"] <= until)
    read = pack_module.load_delivery_rows
    wrote: list[int] = []

    def then_a_delivery(s: Store, ids: list[str]) -> list[dict[str, object]]:
        rows = read(s, ids)
        s.record_deliveries([DeliveryRecord(alert["id"], 1, "alert", "supervisor", "ann",
                                            "a***@example.org", True, None, 1, until)])
        wrote.append(len(rows))
        return rows

    monkeypatch.setattr(pack_module, "load_delivery_rows", then_a_delivery)
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    data = export_pack(store, versions, key, site="yard", since=since, until=until,
                       heads=tmp_path / "heads.jsonl")
    assert wrote, "the hook ran"
    check = verify_pack(data, key.trusted)
    assert check.ok, check.problems
    assert len(store.load_deliveries([alert["id"]])) == wrote[0] + 1  # it was stored


def test_a_head_signed_during_export_gives_a_pack_whose_segment_ends_at_its_head(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pack's head is of the export's snapshot; a larger one signed meanwhile (here
    from another thread, after an audit entry) cannot be followed by it: export again."""
    import threading

    from coverwatch.evidence import pack as pack_module
    from coverwatch.evidence.treeheads import head_now

    versions = _fill(store)
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    heads = tmp_path / "heads.jsonl"
    read = pack_module.load_delivery_rows
    calls: list[int] = []

    def then_a_head(s: Store, ids: list[str]) -> list[dict[str, object]]:
        rows = read(s, ids)
        calls.append(1)
        if len(calls) == 1:
            def sign() -> None:
                s.append_audit("ann", "user.created", "user:zed", {})
                head_now(s, key, "yard", heads)
            t = threading.Thread(target=sign)
            t.start()
            t.join()
        return rows

    monkeypatch.setattr(pack_module, "load_delivery_rows", then_a_head)
    data = export_pack(store, versions, key, site="yard", since=T0 + 3600 * US_PER_S,
                       until=T0 + 3 * 3600 * US_PER_S, heads=heads)
    assert len(calls) == 2, "exported again from a new snapshot"
    z = zipfile.ZipFile(io.BytesIO(data))
    last = orjson.loads(z.read("audit.jsonl").splitlines()[-1])
    head = orjson.loads(z.read("tree-head.json"))["head"]
    assert last["action"] == "user.created"
    assert head["audit_last"] == {"id": last["id"], "hash": last["hash"]}
    check = verify_pack(data, key.trusted)
    assert check.ok, check.problems
    assert any("whole at both ends" in n for n in check.notes), check.notes


def test_a_pdf_from_an_older_renderer_is_not_re_checked_and_the_data_still_verify(
    pack: tuple[bytes, Store, list[SiteVersion], Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pack records the PDF renderer's version; one made by an older renderer (whose
    wording differs) or by a release that did not record it is verified on its data, its
    PDF said to be not re-checked: never failed for wording that changed since."""
    import coverwatch.evidence.pack as pack_module
    import coverwatch.evidence.pdf as pdf_module

    data, store, versions, key_path = pack
    manifest = orjson.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    assert manifest["pdf_renderer"] == pdf_module.PDF_RENDERER
    real = pack_module.render_pack_pdf
    with monkeypatch.context() as m:  # an older release: other wording, an older version
        m.setattr(pdf_module, "PDF_RENDERER", pdf_module.PDF_RENDERER - 1)
        m.setattr(pack_module, "render_pack_pdf", lambda files, site, *a: real(
            files, site + " (as worded before)", *a))
        old = export_pack(store, versions, load_signing_key(key_path), site="yard",
                          since=T0 + 3600 * US_PER_S, until=T0 + 3 * 3600 * US_PER_S)
    # And one from before packs recorded the version at all.
    src = zipfile.ZipFile(io.BytesIO(old))
    body = {k: v for k, v in orjson.loads(src.read("manifest.json")).items()
            if k not in ("signature", "public_key", "key_id", "pdf_renderer")}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("manifest.json", orjson.dumps(sign_document(body, load_signing_key(key_path))))
        for n in src.namelist():
            if n != "manifest.json":
                z.writestr(n, src.read(n))
    for made, was in ((old, f"version {pdf_module.PDF_RENDERER - 1} of the"),
                      (buf.getvalue(), "an unversioned")):
        check = verify_pack(made, load_signing_key(key_path).trusted)
        assert check.ok, check.problems
        assert any(n.startswith(f"report.pdf rendered by {was} PDF renderer (this release "
                                f"renders version {pdf_module.PDF_RENDERER}): not re-checked")
                   for n in check.notes), check.notes
