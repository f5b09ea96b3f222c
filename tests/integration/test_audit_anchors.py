"""The anchored audit: each tamper case an attacker with database access could try is caught
and named (truncated tail, wiped log, recomputed chain, forged append, edited anchor)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, update
from tamperkit import as_owner
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.evidence.anchors import append_anchor, make_anchor, verify_anchored
from coverwatch.evidence.keys import load_signing_key
from coverwatch.storage import Store
from coverwatch.storage.audit import GENESIS_HASH, entry_hash
from coverwatch.storage.auditkeys import load_keyring
from coverwatch.storage.tables import audit


@pytest.fixture
def keyed(store: Store, tmp_path: Path) -> Store:
    store.audit_keyring = load_keyring(tmp_path / "keys" / "audit.key")
    return store


def _fill(store: Store, n: int) -> None:
    for i in range(n):
        store.append_audit("alice", "user.roles", f"user:u{i}", {"n": i})


def _check(store: Store, anchors: Path, tmp_path: Path) -> list[str]:
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    result = verify_anchored(store, anchors, keyring=store.audit_keyring, trusted=key.trusted)
    return [f.kind for f in result.findings]


def _anchor(store: Store, tmp_path: Path) -> Path:
    path = tmp_path / "anchors.jsonl"
    append_anchor(path, make_anchor(store, load_signing_key(tmp_path / "keys" / "audit.key"),
                                    "yard"))
    return path


def test_intact_log_with_anchors_verifies(keyed: Store, tmp_path: Path) -> None:
    _fill(keyed, 3)
    path = _anchor(keyed, tmp_path)
    _fill(keyed, 2)  # entries after the last anchor, properly sealed, are fine
    _anchor(keyed, tmp_path)
    assert _check(keyed, path, tmp_path) == []
    assert all(e.mac for e in keyed.audit_entries())


def test_truncated_tail_is_named(keyed: Store, tmp_path: Path) -> None:
    _fill(keyed, 6)
    path = _anchor(keyed, tmp_path)
    with as_owner(keyed) as conn:
        conn.execute(audit.delete().where(audit.c.id >= 5))
    assert _check(keyed, path, tmp_path) == ["truncated"]


def test_wiped_log_is_named(keyed: Store, tmp_path: Path) -> None:
    _fill(keyed, 4)
    path = _anchor(keyed, tmp_path)
    with as_owner(keyed) as conn:
        conn.execute(audit.delete())
    assert _check(keyed, path, tmp_path) == ["wiped"]


def _rewrite(store: Store, from_id: int, actor: str) -> None:
    """What an attacker with the database but not the key can do: edit, recompute every hash."""
    with as_owner(store) as conn:
        rows = conn.execute(select(audit).order_by(audit.c.id)).all()
        prev = GENESIS_HASH
        for r in rows:
            who = actor if r.id == from_id else r.actor
            digest = entry_hash(r.id, r.at, who, r.action, r.subject, orjson.loads(r.details),
                                prev)
            conn.execute(update(audit).where(audit.c.id == r.id).values(
                actor=who, prev_hash=prev, hash=digest))
            prev = digest


def test_recomputed_chain_is_named(keyed: Store, tmp_path: Path) -> None:
    _fill(keyed, 5)
    path = _anchor(keyed, tmp_path)
    _rewrite(keyed, 2, "mallory")
    kinds = _check(keyed, path, tmp_path)
    assert "rewritten" in kinds
    # Even without the anchor file the MACs give it away.
    result = verify_anchored(keyed, None, keyring=keyed.audit_keyring, trusted=None)
    assert [f.kind for f in result.findings] == ["rewritten"] or \
        [f.kind for f in result.findings] == ["forged"]
    assert "entry 2" in result.findings[0].message


def test_forged_append_after_the_last_anchor_is_named(keyed: Store, tmp_path: Path) -> None:
    _fill(keyed, 3)
    path = _anchor(keyed, tmp_path)
    ring = keyed.audit_keyring
    keyed.audit_keyring = None  # the attacker appends through the database, without the key
    keyed.append_audit("mallory", "alert.acknowledged", "alert:x", {"note": "all fine"})
    keyed.audit_keyring = ring
    assert _check(keyed, path, tmp_path) == ["forged"]
    # A MAC made up without the key does not help either.
    with as_owner(keyed) as conn:
        conn.execute(update(audit).where(audit.c.id == 4).values(mac=ring.current_id + ":" +
                                                                 "0" * 64))
    assert _check(keyed, path, tmp_path) == ["forged"]


def test_edited_anchor_is_named(keyed: Store, tmp_path: Path) -> None:
    _fill(keyed, 3)
    path = _anchor(keyed, tmp_path)
    doc = orjson.loads(path.read_bytes())
    doc["head_id"] = 2
    path.write_bytes(orjson.dumps(doc) + b"\n")
    assert _check(keyed, path, tmp_path) == ["bad-anchor"]


def test_cli_anchor_keys_and_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("COVERWATCH_AUDIT_KEY_FILE", str(tmp_path / "secret" / "audit.key"))
    monkeypatch.setenv("COVERWATCH_PASSWORD", "a long enough password")
    runner = CliRunner()
    args = ["--data-dir", str(data)]
    assert runner.invoke(app, ["users", "add", "ann", "--roles", "admin", *args]).exit_code == 0
    anchors = tmp_path / "anchors.jsonl"
    r = runner.invoke(app, ["audit", "anchor", "--out", str(anchors), *args])
    assert r.exit_code == 0, r.output
    keys = runner.invoke(app, ["audit", "keys", *args])
    assert keys.exit_code == 0 and "BEGIN PUBLIC KEY" in keys.stdout
    assert "secret" not in keys.stdout.lower()
    pub = tmp_path / "public.pem"
    pub.write_text(keys.stdout)
    ok = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors),
                             "--public-key", str(pub), *args])
    assert ok.exit_code == 0 and "1 anchor" in ok.stdout, ok.output
    from coverwatch.storage import open_store

    store = open_store(None, data, audit_key=False)
    with store.engine.begin() as conn:
        conn.execute(audit.delete())
    store.close()
    bad = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), *args])
    assert bad.exit_code == 1 and "wiped" in bad.stdout


YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"


def test_changed_site_id_does_not_hide_a_wiped_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 23: an insider changed the site id stored with the rule versions and wiped the
    log; verify used to skip every anchor as "of another site" and say ok (0 anchors)."""
    from coverwatch.storage import open_store
    from coverwatch.storage.versions import SiteVersion, load_versions, save_versions

    data = tmp_path / "data"
    monkeypatch.setenv("COVERWATCH_AUDIT_KEY_FILE", str(tmp_path / "secret" / "audit.key"))
    monkeypatch.delenv("COVERWATCH_SITE", raising=False)
    store = open_store(None, data)
    save_versions(store, [SiteVersion(0, YARD.read_text(encoding="utf-8"))])
    _fill(store, 3)
    store.close()
    runner = CliRunner()
    args = ["--data-dir", str(data)]
    anchors = tmp_path / "anchors.jsonl"
    assert runner.invoke(app, ["audit", "anchor", "--out", str(anchors), *args]).exit_code == 0
    assert '"site":"harbour-yard"' in anchors.read_text()
    ok = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), *args])
    assert ok.exit_code == 0 and "1 anchor" in ok.stdout, ok.output
    store = open_store(None, data, audit_key=False)
    [version] = load_versions(store)
    save_versions(store, [SiteVersion(0, version.source.replace("site: harbour-yard",
                                                                "site: elsewhere"))])
    with store.engine.begin() as conn:
        conn.execute(audit.delete())
    store.close()
    bad = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), *args])
    assert bad.exit_code == 1, bad.output
    assert "wiped" in bad.stdout and "site-changed" in bad.stdout


def test_verify_refuses_to_call_an_unanchored_log_sound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("COVERWATCH_AUDIT_KEY_FILE", str(tmp_path / "secret" / "audit.key"))
    from coverwatch.storage import open_store

    store = open_store(None, data)
    _fill(store, 2)
    store.close()
    r = CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(data)])
    assert r.exit_code == 2 and "NOT VERIFIED" in r.stdout, r.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = CliRunner().invoke(app, ["audit", "verify", "--anchors", str(empty), "--data-dir",
                                 str(data)])
    assert r.exit_code == 2 and "cannot be called sound" in r.stdout, r.output


def test_anchors_of_another_site_are_named_not_silently_skipped(
    keyed: Store, tmp_path: Path,
) -> None:
    _fill(keyed, 2)
    path = _anchor(keyed, tmp_path)
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    append_anchor(path, make_anchor(keyed, key, "quay"))
    result = verify_anchored(keyed, path, keyring=keyed.audit_keyring, trusted=key.trusted,
                             site="yard")
    assert result.sound and result.other_sites == {"quay": 1}
    both = verify_anchored(keyed, path, keyring=keyed.audit_keyring, trusted=key.trusted)
    assert not both.sound and both.refusal is not None and "several sites" in both.refusal
