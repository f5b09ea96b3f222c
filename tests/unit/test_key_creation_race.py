"""Several sites starting at once create the one audit key and signing key: every one of
them gets the same key, none reads a half-written file (the demo's two sites did)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


@pytest.mark.parametrize(("name", "load", "key"), [
    ("audit.key.ed25519", load_signing_key, lambda k: k.public_b64),
    ("audit.key", load_keyring, lambda k: k.keys),
])
def test_a_key_created_by_several_at_once_is_one_key(
        tmp_path: Path, name: str, load: Callable[[Path], Any], key: Callable[[Any], Any],
) -> None:
    for round_ in range(5):
        mac = tmp_path / str(round_) / "keys" / "audit.key"
        loaded = _at_once(lambda mac=mac: load(mac))
        assert not [k for k in loaded if isinstance(k, Exception)], loaded
        assert len({key(k) for k in loaded}) == 1
        assert key(load(mac)) == key(loaded[0])
        assert [p.name for p in mac.parent.iterdir()] == [name]  # no temporary file left
