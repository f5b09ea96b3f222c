"""Evidence packs: exported, verified on their own, and refused when any byte of a part changes."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.domain.time import US_PER_S, format_time
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
    # Even trusting whatever key signed it, the events give the lie to the lapses.
    alone = verify_pack(bad)
    assert not alone.ok and alone.problems == [
        "lapses.json: the lapses differ from what the events imply"]


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
