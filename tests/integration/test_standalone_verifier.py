"""The standalone verifier, copied out and run without coverwatch, against packs the CLI makes.

The verifier runs in a subprocess (``python -I``, an empty environment) behind an import
guard that refuses every module outside the standard library and ``cryptography``: it
must check a pack with nothing else. Each tamper (by an outsider, or by an insider who
re-signs with the site's own key) must be caught, and the failure must name the part.
"""

from __future__ import annotations

import hashlib
import io
import random
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from alertkit import raise_alerts
from examinerkit import examiner_folder
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.evidence import standalone
from coverwatch.evidence.anchors import sign_document
from coverwatch.evidence.keys import SigningKey, load_signing_key
from coverwatch.storage import Store, open_store
from coverwatch.storage.versions import SiteVersion, save_versions

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
T0 = 1_800_000_000 * US_PER_S
H = 3600 * US_PER_S



def _events(rng: random.Random, t0: int, n: int) -> list[dict[str, Any]]:
    return [{"kind": "fix", "t_us": t0 + rng.randrange(0, 3600) * US_PER_S,
             "officer": f"O{rng.randrange(4)}", "x": rng.uniform(-60, 60),
             "y": rng.uniform(-60, 60), "accuracy": 5.0, "source": "test"} for _ in range(n)]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A pack made by the CLI over a log with an earlier head, the site's public key, the
    tree head file and the verifier copied to a directory of its own."""
    tmp = tmp_path_factory.mktemp("standalone")
    data_dir = tmp / "data"
    rng = random.Random(23)
    store = open_store(None, data_dir)
    save_versions(store, [SiteVersion(0, YARD.read_text(encoding="utf-8"))])
    store.append_events([{"kind": "duty", "t_us": T0, "officer": f"O{i}", "on": True,
                          "capabilities": "armed", "source": "test"} for i in range(4)]
                        + [{"kind": "flag", "t_us": T0, "flag": "open-hours", "on": True,
                            "source": "test"}] + _events(rng, T0, 150))
    for i in range(4):
        store.append_audit("ann", "orders.changed", f"post:p{i}", {"n": i},
                           at=format_time(T0 + H + i * 60 * US_PER_S))
    store.close()
    runner = CliRunner()
    r = runner.invoke(app, ["audit", "head", "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    store = open_store(None, data_dir)
    store.append_events(_events(rng, T0 + H, 150))
    raise_alerts(store, [SiteVersion(0, YARD.read_text(encoding="utf-8"))], T0 + 2 * H)
    store.close()
    out = tmp / "pack.zip"
    r = runner.invoke(app, ["evidence", "export", "--since", format_time(T0 + H // 2),
                            "--until", format_time(T0 + 2 * H), "--out", str(out),
                            "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    keys = runner.invoke(app, ["audit", "keys", "--data-dir", str(data_dir)])
    pub = tmp / "site.pem"
    pub.write_text(keys.stdout)
    examiner = tmp / "examiner"
    verifier = examiner_folder(examiner)
    key_path = data_dir / "keys" / "audit.key"
    return {"pack": out.read_bytes(), "pub": pub, "dir": examiner, "verifier": verifier,
            "key": load_signing_key(key_path), "heads": data_dir / "keys" / "tree-heads.jsonl"}


def _run(made: dict[str, Any], data: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    pack = made["dir"] / "pack.zip"
    pack.write_bytes(data)
    return subprocess.run(
        [sys.executable, "-I", str(made["dir"] / "guard.py"), str(made["verifier"]),
         str(pack), "--public-key", str(made["pub"]), *extra],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd=made["dir"],
        timeout=120, check=False)


def _members(data: bytes) -> dict[str, bytes]:
    z = zipfile.ZipFile(io.BytesIO(data))
    return {n: z.read(n) for n in z.namelist()}


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return buf.getvalue()


def _resign(doc: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    return sign_document({k: v for k, v in doc.items()
                          if k not in ("signature", "public_key", "key_id")}, key)


def _insider(data: bytes, key: SigningKey, change: Callable[[dict[str, bytes]], None]) -> bytes:
    """The pack after ``change``, its manifest recomputed and re-signed with ``key``."""
    files = _members(data)
    change(files)
    manifest = orjson.loads(files["manifest.json"])
    manifest["members"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()
                           if n != "manifest.json"}
    files["manifest.json"] = orjson.dumps(_resign(manifest, key))
    return _zip(files)


def _jsonl(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line]


def _dump_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in rows)


def test_a_pack_the_cli_made_verifies_with_nothing_but_the_standard_library(
    made: dict[str, Any],
) -> None:
    r = _run(made, made["pack"], "--heads", str(made["heads"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every part verified" in r.stdout
    assert "event(s) proved in the log" in r.stdout
    assert "audit entry(s) proved in the log" in r.stdout
    assert "consistency proof holds" in r.stdout
    assert "one of the 2 witnessed heads" in r.stdout
    files = _members(made["pack"])
    # The pack carries the verifier as one file, the examiner's own copy byte for byte.
    assert files["verify_pack.py"] == made["verifier"].read_bytes()
    assert "the pack's verify_pack.py is this file" in r.stdout
    assert len(orjson.loads(files["proofs.json"])["events"]) == len(
        _jsonl(files["events.jsonl"])) > 100


def _edit_event_unsigned(files: dict[str, bytes]) -> None:
    files["events.jsonl"] = files["events.jsonl"].replace(b'"O1"', b'"O2"', 1)


def _move_event(files: dict[str, bytes]) -> None:
    rows = _jsonl(files["events.jsonl"])
    fix = next(r for r in rows if r["kind"] == "fix")
    fix["x"] += 40.0  # and its stored key made to agree, so only the log can tell
    fix["key"] = standalone.event_key(fix)
    files["events.jsonl"] = _dump_jsonl(rows)


def _move_event_keep_key(files: dict[str, bytes]) -> None:
    rows = _jsonl(files["events.jsonl"])
    next(r for r in rows if r["kind"] == "fix")["x"] += 40.0
    files["events.jsonl"] = _dump_jsonl(rows)


def _add_unlogged_event(files: dict[str, bytes]) -> None:
    rows = _jsonl(files["events.jsonl"])
    forged = {**rows[-1], "id": rows[-1]["id"] + 1000, "officer": "O3",
              "t_us": rows[-1]["t_us"] + 1}
    forged["key"] = standalone.event_key(forged)
    files["events.jsonl"] = _dump_jsonl([*rows, forged])
    proofs = orjson.loads(files["proofs.json"])
    proofs["unlogged"]["events"].append(forged["id"])
    files["proofs.json"] = orjson.dumps(proofs)


def _drop_audit_entry(files: dict[str, bytes]) -> None:
    entries = _jsonl(files["audit.jsonl"])
    assert len(entries) >= 3
    dropped = entries.pop(1)
    files["audit.jsonl"] = _dump_jsonl(entries)
    proofs = orjson.loads(files["proofs.json"])
    proofs["audit"].pop(str(dropped["id"]), None)
    files["proofs.json"] = orjson.dumps(proofs)


def _edit_arrival(files: dict[str, bytes]) -> None:
    rows = _jsonl(files["events.jsonl"])
    fix = next(r for r in rows if r["kind"] == "fix")
    fix["received_us"] = fix["t_us"] + 3600 * US_PER_S  # now "back-dated" by an hour
    files["events.jsonl"] = _dump_jsonl(rows)


def _drop_a_proof(files: dict[str, bytes]) -> None:
    proofs = orjson.loads(files["proofs.json"])
    proofs["events"].pop(sorted(proofs["events"])[3])
    files["proofs.json"] = orjson.dumps(proofs)


@pytest.mark.parametrize(("tamper", "insider", "expected"), [
    (_edit_event_unsigned, False, "FAILED events.jsonl: edited: its SHA-256 does not match"),
    (_move_event, True, "is not in the log as leaf"),
    (_move_event_keep_key, True, "says other than its stored key"),
    (_add_unlogged_event, True, "is said to predate the log, yet is newer"),
    (_drop_audit_entry, True, "FAILED audit.jsonl: entries"),
    (_drop_a_proof, True, "has no inclusion proof"),
    (_edit_arrival, True, "(what it says, or its arrival received_us)"),
])
def test_each_tamper_is_caught_and_named(
    made: dict[str, Any], tamper: Callable[[dict[str, bytes]], None], insider: bool,
    expected: str,
) -> None:
    if insider:
        data = _insider(made["pack"], made["key"], tamper)
    else:
        files = _members(made["pack"])
        tamper(files)
        data = _zip(files)
    r = _run(made, data)
    assert r.returncode == 1, r.stdout + r.stderr
    assert expected in r.stdout, r.stdout


def test_a_replaced_verifier_in_a_re_signed_pack_is_named(made: dict[str, Any]) -> None:
    def replace(files: dict[str, bytes]) -> None:
        files["verify_pack.py"] = b"print('ok every part verified')\n"

    r = _run(made, _insider(made["pack"], made["key"], replace))
    assert r.returncode == 0, r.stdout + r.stderr  # the data still holds ...
    assert "the pack's verify_pack.py differs from this file" in r.stdout  # ... but not it


def test_an_edited_arrival_is_named_by_coverwatch_too(made: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """The event's leaf binds its arrival: a pack re-signed with the site's key whose
    ``received_us`` was changed fails at ``coverwatch evidence verify`` as well."""
    pack = tmp_path / "pack.zip"
    pack.write_bytes(_insider(made["pack"], made["key"], _edit_arrival))
    r = CliRunner().invoke(app, ["evidence", "verify", str(pack), "--public-key",
                                 str(made["pub"])])
    assert r.exit_code == 1, r.output
    assert "its arrival received_us" in " ".join(r.output.split())


def test_a_rewritten_tree_head_fails_its_consistency_and_the_witnesses(
    made: dict[str, Any],
) -> None:
    def rewrite(files: dict[str, bytes]) -> None:
        doc = orjson.loads(files["tree-head.json"])
        doc["head"]["root"] = hashlib.sha256(b"another log").hexdigest()
        doc["head"] = _resign(doc["head"], made["key"])
        proofs = orjson.loads(files["proofs.json"])
        proofs["root"] = doc["head"]["root"]
        files["tree-head.json"] = orjson.dumps(doc)
        files["proofs.json"] = orjson.dumps(proofs)

    r = _run(made, _insider(made["pack"], made["key"], rewrite), "--heads", str(made["heads"]))
    assert r.returncode == 1
    assert "FAILED tree-head.json: the head of" in r.stdout  # consistency with the one before
    assert "has another root" in r.stdout  # and a witness saw another root at that size
    assert "FAILED events.jsonl: event" in r.stdout  # and the proofs fail against it


def test_another_key_and_a_broken_archive_are_named(made: dict[str, Any], tmp_path: Path) -> None:
    mallory = load_signing_key(tmp_path / "mallory" / "k")
    r = _run(made, _insider(made["pack"], mallory, lambda files: None))
    assert r.returncode == 1 and "FAILED manifest.json: signed by an untrusted key" in r.stdout
    r = _run(made, made["pack"][: len(made["pack"]) // 2])
    assert r.returncode == 1 and "FAILED pack: not a readable zip archive" in r.stdout


def test_replay_pack_re_derives_the_reports_lapses(made: dict[str, Any], tmp_path: Path) -> None:
    pack = tmp_path / "pack.zip"
    pack.write_bytes(made["pack"])
    runner = CliRunner()
    r = runner.invoke(app, ["replay", "--pack", str(pack), "--json", str(tmp_path / "l.jsonl")])
    assert r.exit_code == 0, r.output
    assert "the pack's lapses.json agrees" in r.stdout
    reported = orjson.loads(_members(made["pack"])["lapses.json"])
    assert reported, "the window should hold lapses to compare"
    assert _jsonl((tmp_path / "l.jsonl").read_bytes()) == reported
    # A report that hides a lapse: replay names the lapse the events imply.
    files = _members(made["pack"])
    files["lapses.json"] = orjson.dumps(reported[1:])
    pack.write_bytes(_zip(files))
    r = runner.invoke(app, ["replay", "--pack", str(pack)])
    assert r.exit_code == 1
    first = reported[0]
    assert f"DIFFERS the events imply {first['post']}/{first['rule']} from {first['start']}" \
        in " ".join(r.stdout.split())
    pack.write_bytes(b"not a zip")
    r = runner.invoke(app, ["replay", "--pack", str(pack)])
    assert r.exit_code == 2 and "not a readable evidence pack" in " ".join(r.output.split())
    r = runner.invoke(app, ["replay", str(YARD), "--pack", str(pack)])
    assert r.exit_code == 2 and "--pack takes no SITE" in r.output


def test_packs_from_either_backend_carry_proofs_that_verify(
    store: Store, tmp_path: Path,
) -> None:
    from coverwatch.evidence.pack import export_pack

    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    save_versions(store, versions)
    rng = random.Random(4)
    store.append_events(_events(rng, T0, 40))
    store.append_audit("ann", "orders.changed", "post:p", {"n": 1},
                       at=format_time(T0 + 60 * US_PER_S))
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    data = export_pack(store, versions, key, site="yard", since=T0, until=T0 + H,
                       heads=tmp_path / "heads.jsonl")
    res = standalone.check_pack(data, key.trusted)
    assert res.ok, res.problems
    assert "40 event(s) proved in the log" in " ".join(res.notes)
    assert "1 audit entry(s) proved in the log" in " ".join(res.notes)


def test_a_log_of_version_1_event_leaves_still_verifies(tmp_path: Path) -> None:
    """Events logged before their leaf bound the arrival (``{"key"}`` only) still prove;
    the verifier says their arrival is not proved."""
    from sqlalchemy import update

    from coverwatch.evidence.pack import export_pack
    from coverwatch.storage.tables import tlog_leaves

    store = open_store(None, tmp_path / "data")
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    save_versions(store, versions)
    store.append_events(_events(random.Random(5), T0, 20))
    with store.engine.begin() as conn:  # as an older release wrote them
        for idx, ref, leaf in conn.execute(tlog_leaves.select().with_only_columns(
                tlog_leaves.c.idx, tlog_leaves.c.ref, tlog_leaves.c.leaf).where(
                tlog_leaves.c.kind == "event")).all():
            old = orjson.loads(leaf)
            assert "received_us" in old
            v1 = orjson.dumps({"key": old["key"], "kind": "event", "ref": ref},
                              option=orjson.OPT_SORT_KEYS)
            conn.execute(update(tlog_leaves).where(tlog_leaves.c.idx == idx).values(
                leaf=v1.decode(), hash=hashlib.sha256(b"\x00" + v1).hexdigest()))
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    data = export_pack(store, versions, key, site="yard", since=T0, until=T0 + H,
                       heads=tmp_path / "heads.jsonl")
    store.close()
    res = standalone.check_pack(data, key.trusted)
    assert res.ok, res.problems
    assert "20 logged before leaves bound the arrival" in " ".join(res.notes)
