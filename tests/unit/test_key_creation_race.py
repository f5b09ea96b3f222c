"""Several sites starting at once create the one audit key and signing key: every one of
them gets the same key, none reads a half-written file (the demo's two sites did)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coverwatch.evidence.keys import load_signing_key
from coverwatch.storage.auditkeys import load_keyring


def _at_once(fn: Callable[[], Any], n: int = 8) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = []

    def run() -> None:
        barrier.wait()
        try:
            out.append(fn())
        except Exception as e:
            out.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_the_signing_key_created_by_several_at_once_is_one_key(tmp_path: Path) -> None:
    for round_ in range(5):
        mac = tmp_path / str(round_) / "keys" / "audit.key"
        keys = _at_once(lambda mac=mac: load_signing_key(mac))
        assert not [k for k in keys if isinstance(k, Exception)], keys
        assert len({k.public_b64 for k in keys}) == 1
        assert load_signing_key(mac).public_b64 == keys[0].public_b64
        assert [p.name for p in mac.parent.iterdir()] == ["audit.key.ed25519"]  # no .tmp left


def test_the_audit_key_created_by_several_at_once_is_one_key(tmp_path: Path) -> None:
    for round_ in range(5):
        path = tmp_path / str(round_) / "keys" / "audit.key"
        rings = _at_once(lambda path=path: load_keyring(path))
        assert not [r for r in rings if isinstance(r, Exception)], rings
        assert len({r.keys for r in rings}) == 1
        assert load_keyring(path).keys == rings[0].keys
        assert [p.name for p in path.parent.iterdir()] == ["audit.key"]
