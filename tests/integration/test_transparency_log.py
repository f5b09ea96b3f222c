"""The site's transparency log: audit entries are leaves appended with them, signed tree
heads chain to each other, and verify names a deleted or replayed head, a rewritten or
truncated log (issue 23, deliverable 1)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import delete, func, select, update
from tamperkit import as_owner
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.domain.merkle import leaf_hash
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.treeheads import head_now, verify_tree_heads
from coverwatch.storage import Store
from coverwatch.storage.store import row_key
from coverwatch.storage.tables import audit, tlog_leaves
from coverwatch.storage.tlog import leaf_bytes


def _fill(store: Store, n: int) -> None:
    for i in range(n):
        store.append_audit("alice", "user.roles", f"user:u{i}", {"n": i})


def _heads(store: Store, tmp_path: Path, *batches: int) -> Path:
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    path = tmp_path / "tree-heads.jsonl"
    for n in batches:
        _fill(store, n)
        head_now(store, key, "yard", path)
    return path


def _kinds(store: Store, path: Path, tmp_path: Path) -> list[str]:
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    result = verify_tree_heads(store, path, trusted=key.trusted, site="yard")
    return sorted({f.kind for f in result.findings})


def test_every_audit_entry_is_a_leaf_and_heads_verify(store: Store, tmp_path: Path) -> None:
    path = _heads(store, tmp_path, 3, 5, 1, 8)
    with store.reading() as conn:
        assert conn.execute(select(func.count()).select_from(tlog_leaves)
                            .where(tlog_leaves.c.site == store.site)).scalar() == 17
    assert _kinds(store, path, tmp_path) == []
    heads = [orjson.loads(x) for x in path.read_text().splitlines()]
    assert [h["size"] for h in heads] == [3, 8, 9, 17]
    assert heads[0]["prev"] is None and heads[1]["prev_size"] == 3


def test_a_leaf_commits_with_its_entry_or_not_at_all(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import coverwatch.storage.audit as audit_module

    def broken(*_a: object, **_k: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit_module, "append_leaves", broken)
    with pytest.raises(RuntimeError):
        store.append_audit("alice", "user.roles", "user:x")
    assert store.audit_entries() == []


def test_a_deleted_head_is_named(store: Store, tmp_path: Path) -> None:
    path = _heads(store, tmp_path, 2, 2, 2)
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[2] + "\n")
    assert _kinds(store, path, tmp_path) == ["head-missing"]


def test_a_removed_newest_head_is_named(store: Store, tmp_path: Path) -> None:
    path = _heads(store, tmp_path, 2, 2)
    path.write_text(path.read_text().splitlines()[0] + "\n")
    assert _kinds(store, path, tmp_path) == ["head-missing"]


def test_a_replayed_head_is_named(store: Store, tmp_path: Path) -> None:
    path = _heads(store, tmp_path, 2, 2)
    first = path.read_text().splitlines()[0]
    with path.open("a") as f:
        f.write(first + "\n")
    assert _kinds(store, path, tmp_path) == ["head-missing", "replayed"]


def test_a_rewritten_log_is_named_even_with_leaf_hashes_recomputed(
    store: Store, tmp_path: Path,
) -> None:
    path = _heads(store, tmp_path, 3, 1)
    forged = b'{"hash":"' + b"f" * 64 + b'","kind":"audit","ref":"2"}'
    with as_owner(store) as conn:
        conn.execute(update(tlog_leaves).where(tlog_leaves.c.site == store.site,
                                               tlog_leaves.c.idx == 1)
                     .values(leaf=forged.decode(), hash=leaf_hash(forged).hex()))
    assert _kinds(store, path, tmp_path) == ["audit-mismatch", "inconsistent", "log-rewritten"]


def test_a_truncated_log_is_named(store: Store, tmp_path: Path) -> None:
    path = _heads(store, tmp_path, 3, 3)
    with as_owner(store) as conn:
        conn.execute(delete(tlog_leaves).where(tlog_leaves.c.site == store.site,
                                               tlog_leaves.c.idx >= 4))
        conn.execute(delete(audit).where(audit.c.site == store.site, audit.c.id >= 5))
    assert _kinds(store, path, tmp_path) == ["log-truncated"]


def test_cli_anchor_makes_a_head_and_verify_names_a_lost_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("COVERWATCH_AUDIT_KEY_FILE", str(tmp_path / "secret" / "audit.key"))
    monkeypatch.setenv("COVERWATCH_PASSWORD", "a long enough password")
    monkeypatch.delenv("COVERWATCH_SITE", raising=False)
    runner = CliRunner()
    args = ["--data-dir", str(data)]
    anchors = tmp_path / "out" / "anchors.jsonl"
    assert runner.invoke(app, ["users", "add", "ann", "--roles", "admin", *args]).exit_code == 0
    for _ in range(2):
        r = runner.invoke(app, ["audit", "anchor", "--out", str(anchors), *args])
        assert r.exit_code == 0, r.output
        assert runner.invoke(app, ["users", "add", f"b{_}", "--roles", "admin",
                                   *args]).exit_code == 0
    heads = anchors.with_name("tree-heads.jsonl")
    ok = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), *args])
    assert ok.exit_code == 0 and "2 head(s)" in ok.stdout, ok.output
    heads.write_text(heads.read_text().splitlines()[0] + "\n")
    bad = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), *args])
    assert bad.exit_code == 1 and "head-missing" in bad.stdout, bad.output


def _events(n: int, t0: int = 1_800_000_000_000_000) -> list[dict[str, object]]:
    return [{"kind": "fix", "t_us": t0 + i, "officer": "O1", "x": float(i), "y": 0.0,
             "accuracy": 5.0, "source": "test"} for i in range(n)]


def test_every_stored_event_is_a_leaf_in_its_transaction(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fill(store, 1)
    store.append_events(_events(4))
    report = {"device": "phone-1", "t_us": 1_800_000_000_000_000, "raw": {"battery": 40}}
    store.append_events(_events(4), reports=[report])  # re-sent events: no new leaf
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    path = tmp_path / "tree-heads.jsonl"
    head_now(store, key, "yard", path)
    with store.reading() as conn:
        kinds = [k for (k,) in conn.execute(select(tlog_leaves.c.kind).where(
            tlog_leaves.c.site == store.site).order_by(tlog_leaves.c.idx))]
    assert kinds == ["audit", "event", "event", "event", "event", "device-report"]
    assert _kinds(store, path, tmp_path) == []

    import coverwatch.storage.events as events_module

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(events_module, "append_event_leaves", broken)
    with pytest.raises(RuntimeError):
        store.append_events(_events(2, t0=1_900_000_000_000_000))
    assert store.count_events() == 4


def test_event_leaves_are_the_canonical_json_of_their_keys(store: Store) -> None:
    # Officer names a JSON writer must escape: quotes, backslashes, control and
    # non-ASCII characters; each leaf must be leaf_bytes' canonical JSON and hash.
    names = ['O"1', "O\\2", "O\t3\n", "Ölçer ✓", "O\u2028\U0001f600"]
    rows = [{"kind": "fix", "t_us": 1_800_000_000_000_000 + i, "officer": name, "x": 1.0,
             "y": 2.0, "accuracy": 5.0, "source": "test"} for i, name in enumerate(names)]
    report = {"device": 'ph"one', "t_us": 1_800_000_000_000_000, "raw": {"battery": 40}}
    result = store.append_events(rows, reports=[report])
    with store.reading() as conn:
        leaves = list(conn.execute(select(
            tlog_leaves.c.kind, tlog_leaves.c.ref, tlog_leaves.c.leaf, tlog_leaves.c.hash)
            .where(tlog_leaves.c.site == store.site).order_by(tlog_leaves.c.idx)))
    keys = {("event", str(r["id"])): row_key(r) for r in result.rows}
    keys["device-report", str(result.reports[0]["id"])] = str(result.reports[0]["key"])
    assert [k for k, *_ in leaves] == ["event"] * len(names) + ["device-report"]
    arrival = {str(e["id"]): e["received_us"] for e in store.events_since(0)}
    for kind, ref, leaf, digest in leaves:
        body: dict[str, object] = {"key": keys[kind, ref]}
        if kind == "event":  # an event's leaf binds its arrival as stored
            assert isinstance(arrival[ref], int)
            body["received_us"] = arrival[ref]
        expected = leaf_bytes(kind, ref, body)
        assert leaf == expected.decode()
        assert digest == leaf_hash(expected).hex()
        assert orjson.loads(leaf) == {**body, "kind": kind, "ref": ref}


def test_a_wiped_audit_table_is_one_finding_naming_the_count(
    store: Store, tmp_path: Path,
) -> None:
    path = _heads(store, tmp_path, 5)
    with as_owner(store) as conn:
        conn.execute(delete(audit).where(audit.c.site == store.site))
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    result = verify_tree_heads(store, path, trusted=key.trusted, site="yard")
    [finding] = result.findings
    assert finding.kind == "audit-mismatch" and "entry 1 and 4 more" in finding.message


def test_cli_verify_refuses_without_heads_and_names_heads_it_does_not_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("COVERWATCH_AUDIT_KEY_FILE", str(tmp_path / "secret" / "audit.key"))
    monkeypatch.setenv("COVERWATCH_PASSWORD", "a long enough password")
    monkeypatch.delenv("COVERWATCH_SITE", raising=False)
    runner = CliRunner()
    args = ["--data-dir", str(data)]
    anchors = tmp_path / "out" / "anchors.jsonl"
    assert runner.invoke(app, ["users", "add", "ann", "--roles", "admin", *args]).exit_code == 0
    assert runner.invoke(app, ["audit", "anchor", "--out", str(anchors), *args]).exit_code == 0
    heads = anchors.with_name("tree-heads.jsonl")
    kept = heads.read_text()
    # Another site's head in the same file is named as not checked, never passed over.
    key = load_signing_key(tmp_path / "secret" / "audit.key")
    from coverwatch.evidence.anchors import sign_document

    mine = orjson.loads(kept.splitlines()[0])
    other = sign_document({**{k: v for k, v in mine.items()
                              if k not in ("signature", "public_key", "key_id")},
                           "site": "quay"}, key)
    heads.write_text(kept + orjson.dumps(other).decode() + "\n")
    ok = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), *args])
    assert ok.exit_code == 0 and "not checked: 1 tree head(s) of site quay" in ok.stdout, \
        ok.output
    # Without a tree head file the log is never called sound (exit 2, said why).
    heads.unlink()
    refused = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), *args])
    assert refused.exit_code == 2 and "no tree head file" in refused.stdout, refused.output
