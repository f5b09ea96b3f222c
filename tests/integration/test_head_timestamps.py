"""RFC 3161 time-stamps of signed tree heads, with `openssl ts` as a local authority
(issue 23, deliverable 2): a valid reply verifies under the authority's CA; a reply for
another head, or under another CA, does not."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import orjson
import pytest
from tsakit import authority as _authority
from tsakit import poster as _poster

from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.timestamps import (
    check_timestamps,
    timestamp_head,
    tsr_file,
    verify_timestamp,
)
from coverwatch.evidence.treeheads import head_now
from coverwatch.storage import Store

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

def test_a_head_time_stamped_by_an_authority_verifies(store: Store, tmp_path: Path) -> None:
    authority = _authority(tmp_path / "tsa", "Test")
    other = _authority(tmp_path / "other", "Other")
    store.append_audit("alice", "user.roles", "user:u")
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    heads = tmp_path / "tree-heads.jsonl"
    first = head_now(store, key, "yard", heads)
    reply = timestamp_head(first, "http://tsa.invalid/", heads, post=_poster(authority))
    [line] = [orjson.loads(x) for x in tsr_file(heads).read_text().splitlines()]
    assert base64.b64decode(line["tsr"]) == reply and line["site"] == "yard"
    assert verify_timestamp(first, reply, authority / "ca.pem") is None
    assert verify_timestamp(first, reply, other / "ca.pem") is not None
    store.append_audit("alice", "user.roles", "user:v")
    second = head_now(store, key, "yard", heads)
    assert verify_timestamp(second, reply, authority / "ca.pem") is not None
    assert check_timestamps(heads, [first, second], authority / "ca.pem") == (1, [])
    stamped, bad = check_timestamps(heads, [first, second], other / "ca.pem")
    assert stamped == 0 and [f.kind for f in bad] == ["bad-timestamp"]


def test_cli_verify_checks_time_stamps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from coverwatch.cli import app

    authority = _authority(tmp_path / "tsa", "Test")
    other = _authority(tmp_path / "other", "Other")
    data = tmp_path / "data"
    monkeypatch.setenv("COVERWATCH_AUDIT_KEY_FILE", str(tmp_path / "secret" / "audit.key"))
    monkeypatch.setenv("COVERWATCH_PASSWORD", "a long enough password")
    monkeypatch.delenv("COVERWATCH_SITE", raising=False)
    runner = CliRunner()
    args = ["--data-dir", str(data)]
    assert runner.invoke(app, ["users", "add", "ann", "--roles", "admin", *args]).exit_code == 0
    anchors = tmp_path / "anchors.jsonl"
    assert runner.invoke(app, ["audit", "anchor", "--out", str(anchors), *args]).exit_code == 0
    heads = anchors.with_name("tree-heads.jsonl")
    head = orjson.loads(heads.read_text().splitlines()[-1])
    timestamp_head(head, "http://tsa.invalid/", heads, post=_poster(authority))
    ok = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), "--tsa-ca",
                             str(authority / "ca.pem"), *args])
    assert ok.exit_code == 0 and "time-stamped: 1 of 1" in ok.stdout, ok.output
    bad = runner.invoke(app, ["audit", "verify", "--anchors", str(anchors), "--tsa-ca",
                              str(other / "ca.pem"), *args])
    assert bad.exit_code == 1 and "bad-timestamp" in bad.stdout, bad.output
