"""The standalone verifier (one file, run alone) checks a pack's alerts,
deliveries and rule versions against the log and the head's RFC 3161 time-stamp
against the authority's certificate the examiner gives (issue 23, deliverables 1 and 4);
``openssl ts`` is the local authority."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from examinerkit import examiner_folder
from tsakit import authority, poster
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.domain.alerts import Alert, alert_id_for
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.evidence import standalone_proofs
from coverwatch.evidence.anchors import sign_document
from coverwatch.evidence.keys import SigningKey, load_signing_key
from coverwatch.evidence.timestamps import timestamp_head
from coverwatch.evidence.treeheads import head_now
from coverwatch.storage import open_store
from coverwatch.storage.deliveries import DeliveryRecord
from coverwatch.storage.versions import SiteVersion, save_versions

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
T0 = 1_767_225_600 * US_PER_S  # 2026-01-01T00:00:00Z
H = 3600 * US_PER_S


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A pack with an alert, its deliveries and two rule versions, proved against a head
    the local authority time-stamped; the verifier in a folder of its own."""
    tmp = tmp_path_factory.mktemp("tsa")
    data_dir = tmp / "data"
    store = open_store(None, data_dir)
    source = YARD.read_text(encoding="utf-8")
    save_versions(store, [SiteVersion(0, source)])
    save_versions(store, [SiteVersion(0, source), SiteVersion(T0 + H // 4, source + "\n")])
    store.append_events([{"kind": "duty", "t_us": T0 + i, "officer": f"O{i}", "on": True,
                          "capabilities": "armed", "source": "test"} for i in range(2)])
    # An SOS (a lapse alert would be checked against the lapses the events imply).
    alert = Alert(id=alert_id_for("sos", "O0", "sos", T0), kind="sos", post="O0",
                  rule="sos", lapse_start=T0, alert_at=T0, count=0, need=1)
    raised = alert.to_record()
    store.record_alert_event(raised, actor="engine", action="alert.raised")
    alert.acknowledge("sam", "on my way", T0 + 90 * US_PER_S)
    store.record_alert_event(alert.to_record(), actor="sam", action="alert.acknowledged")
    store.record_deliveries([DeliveryRecord(alert.id, 0, "escalation", "role:sup", "sam",
                                            None, ok, None if ok else "timeout", 1,
                                            T0 + 61 * US_PER_S) for ok in (False, True)])
    key_path = data_dir / "keys" / "audit.key"
    key, heads = load_signing_key(key_path), key_path.with_name("tree-heads.jsonl")
    tsa, other = authority(tmp / "tsa", "Test"), authority(tmp / "other", "Other")
    head = head_now(store, key, "harbour-yard", heads)  # the whole log: the pack takes it
    timestamp_head(head, "http://tsa.invalid/", heads, post=poster(tsa))
    store.close()
    out = tmp / "pack.zip"
    r = CliRunner().invoke(app, ["evidence", "export", "--since", format_time(T0),
                                 "--until", format_time(T0 + H), "--out", str(out),
                                 "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    pub = tmp / "site.pem"
    pub.write_text(key.public_pem())
    examiner = tmp / "examiner"
    examiner_folder(examiner)
    return {"pack": out.read_bytes(), "pub": pub, "dir": examiner, "key": key,
            "ca": tsa / "ca.pem", "other": other / "ca.pem", "raised": raised,
            "data": data_dir}


def _run(made: dict[str, Any], data: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    pack = made["dir"] / "pack.zip"
    pack.write_bytes(data)
    return subprocess.run(
        [sys.executable, "-I", str(made["dir"] / "guard.py"), str(made["dir"] / "verify_pack.py"),
         str(pack), "--public-key", str(made["pub"]), *extra],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd=made["dir"],
        timeout=120, check=False)


def _insider(data: bytes, key: SigningKey, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The pack after ``change`` (of its parsed JSON members), re-signed with the site's key."""
    z = zipfile.ZipFile(io.BytesIO(data))
    files = {n: z.read(n) for n in z.namelist()}
    parsed = {n: orjson.loads(files[n]) for n in files if n.endswith(".json")}
    change(parsed)
    files |= {n: orjson.dumps(v) for n, v in parsed.items() if n != "manifest.json"}
    manifest = parsed["manifest.json"]
    manifest["members"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()
                           if n != "manifest.json"}
    files["manifest.json"] = orjson.dumps(sign_document(
        {k: v for k, v in manifest.items() if k not in ("signature", "public_key", "key_id")},
        key))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for n, d in files.items():
            out.writestr(n, d)
    return buf.getvalue()


def test_alerts_deliveries_rule_versions_and_the_time_stamp_verify(made: dict[str, Any]) -> None:
    r = _run(made, made["pack"], "--tsa-ca", str(made["ca"]))
    assert r.returncode == 0, r.stdout + r.stderr
    for proved in ("1 alert(s) proved", "2 delivery(s) proved", "rule version(s) proved",
                   "the head was time-stamped at 20"):
        assert proved in r.stdout, r.stdout


def test_another_authority_or_no_time_stamp_is_named(made: dict[str, Any]) -> None:
    r = _run(made, made["pack"], "--tsa-ca", str(made["other"]))
    assert r.returncode == 1 and "the head's RFC 3161 time-stamp" in r.stdout, r.stdout

    def drop(p: dict[str, Any]) -> None:
        del p["tree-head.json"]["timestamp"]

    r = _run(made, _insider(made["pack"], made["key"], drop), "--tsa-ca", str(made["ca"]))
    assert r.returncode == 1 and "carries no RFC 3161 time-stamp" in r.stdout, r.stdout
    # Without --tsa-ca the same pack verifies: the time-stamp is the examiner's to ask for.
    assert _run(made, _insider(made["pack"], made["key"], drop)).returncode == 0


def _drop_the_sos(p: dict[str, Any]) -> None:
    """The SOS alert's whole record gone: from alerts.json, its deliveries and proofs."""
    [sos] = [a for a in p["alerts.json"] if a["kind"] == "sos"]
    p["alerts.json"] = [a for a in p["alerts.json"] if a is not sos]
    p["deliveries.json"] = [d for d in p["deliveries.json"] if d["alert_id"] != sos["id"]]
    proofs = p["proofs.json"]
    proofs["alerts"], proofs["deliveries"] = {}, {}


def _roll_back_the_sos(made: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """The SOS carried as first raised, proved by its own older leaf (the insider has the
    log), hiding who acknowledged it."""
    from sqlalchemy import select

    from coverwatch.domain.merkle import Levels
    from coverwatch.storage.tables import tlog_leaves
    from coverwatch.storage.tlog import leaf_hashes

    store = open_store(None, made["data"])
    with store.reading() as conn:
        first = min(int(i) for (i,) in conn.execute(select(tlog_leaves.c.idx).where(
            tlog_leaves.c.kind == "alert")))
        hashes = leaf_hashes(conn, store.site)
    store.close()

    def change(p: dict[str, Any]) -> None:
        size = p["proofs.json"]["tree_size"]
        [n] = [i for i, a in enumerate(p["alerts.json"]) if a["kind"] == "sos"]
        p["alerts.json"][n] = made["raised"]
        p["proofs.json"]["alerts"][str(n)] = {"leaf": first, "path": [
            h.hex() for h in Levels(hashes[:size]).inclusion_proof(first, size)]}
    return change


@pytest.mark.parametrize(("change", "expected"), [
    (lambda made: _drop_the_sos, "FAILED alerts.json: lacks alert sos-"),
    (_roll_back_the_sos, "FAILED alerts.json: carries alert sos-"),
])
def test_an_alert_record_dropped_or_rolled_back_is_named(
    made: dict[str, Any], tmp_path: Path,
    change: Callable[[dict[str, Any]], Callable[[dict[str, Any]], None]], expected: str,
) -> None:
    data = _insider(made["pack"], made["key"], change(made))
    r = _run(made, data)
    assert r.returncode == 1, r.stdout + r.stderr
    assert expected in r.stdout, r.stdout
    pack = tmp_path / "pack.zip"
    pack.write_bytes(data)
    out = CliRunner().invoke(app, ["evidence", "verify", str(pack), "--public-key",
                                   str(made["pub"])])
    assert out.exit_code == 1 and expected.removeprefix("FAILED ") in out.output, out.output


def test_coverwatch_evidence_verify_checks_the_time_stamp_too(
    made: dict[str, Any], tmp_path: Path,
) -> None:
    pack = tmp_path / "pack.zip"
    pack.write_bytes(made["pack"])
    runner = CliRunner()
    base = ["evidence", "verify", str(pack), "--public-key", str(made["pub"]), "--tsa-ca"]
    r = runner.invoke(app, [*base, str(made["ca"])])
    assert r.exit_code == 0, r.output
    assert "the head was time-stamped at 20" in r.output
    r = runner.invoke(app, [*base, str(made["other"])])
    assert r.exit_code == 1 and "the head's RFC 3161 time-stamp" in r.output, r.output
    r = runner.invoke(app, [*base, str(tmp_path / "missing.pem")])
    assert r.exit_code == 2 and "missing.pem" in r.output, r.output


def test_an_altered_time_stamp_fails(made: dict[str, Any]) -> None:
    def flip(p: dict[str, Any]) -> None:
        reply = bytearray(base64.b64decode(p["tree-head.json"]["timestamp"]))
        reply[-3] ^= 0x01  # inside the signature, at the end of the token
        p["tree-head.json"]["timestamp"] = base64.b64encode(bytes(reply)).decode()

    r = _run(made, _insider(made["pack"], made["key"], flip), "--tsa-ca", str(made["ca"]))
    assert r.returncode == 1 and "time-stamp" in r.stdout, r.stdout


def _ack_note(p: dict[str, Any]) -> None:
    p["alerts.json"][0]["acknowledgement_note"] = "arrived at once"


def _delivered(p: dict[str, Any]) -> None:
    p["deliveries.json"][0]["outcome"] = "delivered"


def _rule(p: dict[str, Any]) -> None:
    p["rule-versions.json"][-1]["source"] += "# weakened\n"


@pytest.mark.parametrize(("change", "named"), [
    (_ack_note, "alerts.json: alert 1 ("),
    (_delivered, "deliveries.json: delivery 1 ("),
    (_rule, "rule-versions.json: rule version 2 ("),
])
def test_a_re_signed_record_fails_its_inclusion_proof(
    made: dict[str, Any], change: Callable[[dict[str, Any]], None], named: str,
) -> None:
    r = _run(made, _insider(made["pack"], made["key"], change))
    assert r.returncode == 1 and named in r.stdout and "inclusion proof fails" in r.stdout, \
        r.stdout


def test_a_reply_that_is_not_a_token_is_named_not_raised(made: dict[str, Any]) -> None:
    ca = made["ca"].read_bytes()
    for junk in (b"", b"\x30\x03\x02\x01\x00", b"\x30\x82\xff\xff", b"not der at all"):
        why = standalone_proofs.verify_timestamp_token(junk, b"{}", ca)
        assert why is not None and ("not a readable" in why or "refused" in why), (junk, why)
