"""The audit MAC key: a secret kept outside the database that seals each audit entry.

Without it nobody can append an entry that verifies, even with full write
access to the database. The key file (``COVERWATCH_AUDIT_KEY_FILE``, by default
``<data dir>/keys/audit.key``) holds one key per line, ``<key id> <hex secret>``;
the first line is the key in use, later lines are retired keys kept so that
older entries still verify (see docs/evidence.md, "Keys").
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from coverwatch.errors import StoreError
from coverwatch.storage.private import write_private

__all__ = ["KEY_FILE_ENV", "AuditKeyring", "default_key_path", "load_keyring", "rotate_keyring"]

KEY_FILE_ENV = "COVERWATCH_AUDIT_KEY_FILE"


def default_key_path(data_dir: Path) -> Path:
    """Where the key file is: ``$COVERWATCH_AUDIT_KEY_FILE`` or ``<data_dir>/keys/audit.key``."""
    env = os.environ.get(KEY_FILE_ENV)
    return Path(env) if env else Path(data_dir) / "keys" / "audit.key"


def _key_id(secret: bytes) -> str:
    return "k" + hashlib.sha256(secret).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class AuditKeyring:
    """The MAC keys: ``keys[0]`` seals new entries, every key verifies."""

    path: Path
    keys: tuple[tuple[str, bytes], ...]

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    def seal(self, entry_hash: str) -> str:
        """``<key id>:<HMAC-SHA256 hex>`` of an entry's hash under the current key."""
        kid, secret = self.keys[0]
        return f"{kid}:{hmac.new(secret, entry_hash.encode(), hashlib.sha256).hexdigest()}"

    def check(self, entry_hash: str, mac: str | None) -> str | None:
        """None if ``mac`` seals ``entry_hash`` under one of the keys, else why not."""
        if not mac:
            return "has no MAC"
        kid, _, digest = mac.partition(":")
        for key_id, secret in self.keys:
            if key_id == kid:
                good = hmac.new(secret, entry_hash.encode(), hashlib.sha256).hexdigest()
                return None if hmac.compare_digest(good, digest) else "MAC does not match"
        return f"MAC is under unknown key {kid!r}"


def _parse(path: Path) -> tuple[tuple[str, bytes], ...]:
    keys = []
    for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            secret = bytes.fromhex(parts[1])
        except (IndexError, ValueError):
            raise StoreError(f"{path}:{n}: expected '<key id> <hex secret>'") from None
        if len(secret) < 32:
            raise StoreError(f"{path}:{n}: the secret must be at least 32 bytes")
        keys.append((parts[0], secret))
    if not keys:
        raise StoreError(f"{path}: no key")
    return tuple(keys)


def load_keyring(path: Path, *, create: bool = True) -> AuditKeyring | None:
    """Read the key file; create it with a fresh key if missing and ``create``."""
    if not path.exists():
        if not create:
            return None
        secret = secrets.token_bytes(32)
        write_private(path, f"{_key_id(secret)} {secret.hex()}\n".encode("ascii"), replace=False)
    try:
        return AuditKeyring(path, _parse(path))
    except OSError as e:
        raise StoreError(f"{path}: cannot read the audit key: {e.strerror}") from None


def rotate_keyring(path: Path) -> AuditKeyring:
    """Put a fresh key first; the old ones stay to verify older entries."""
    old = _parse(path) if path.exists() else ()
    secret = secrets.token_bytes(32)
    lines = [f"{_key_id(secret)} {secret.hex()}"] + [f"{k} {s.hex()}" for k, s in old]
    write_private(path, ("\n".join(lines) + "\n").encode("ascii"))
    return AuditKeyring(path, _parse(path))
