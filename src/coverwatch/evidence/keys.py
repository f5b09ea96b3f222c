"""The Ed25519 signing key for audit anchors and evidence packs, kept beside the MAC key.

``<audit key file>.ed25519`` holds the private key (PEM, PKCS#8, mode 0600);
``<audit key file>.ed25519.retired`` lists earlier public keys (one base64 line
each) that anchors made before a rotation were signed with. Investigators get
the public key from ``coverwatch audit keys``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coverwatch.errors import CoverwatchError
from coverwatch.storage.private import write_private

__all__ = ["EvidenceKeyError", "SigningKey", "key_fingerprint", "load_signing_key",
           "rotate_signing_key", "verify_signature"]


class EvidenceKeyError(CoverwatchError):
    """A signing key is missing, unreadable or not an Ed25519 key."""


def key_fingerprint(public_b64: str) -> str:
    return "ed25519:" + hashlib.sha256(base64.b64decode(public_b64)).hexdigest()[:16]


def _public_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The private key, and every public key whose signatures are trusted."""

    path: Path
    private: Ed25519PrivateKey
    retired: tuple[str, ...]

    @property
    def public_b64(self) -> str:
        return _public_b64(self.private.public_key())

    @property
    def trusted(self) -> tuple[str, ...]:
        return (self.public_b64, *self.retired)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode()

    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def verify_signature(public_b64: str, message: bytes, signature_b64: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
        key.verify(base64.b64decode(signature_b64), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _signing_path(mac_key_path: Path) -> Path:
    return mac_key_path.with_name(mac_key_path.name + ".ed25519")


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_signing_key(mac_key_path: Path, *, create: bool = True) -> SigningKey:
    """The signing key beside the MAC key file; created if missing and ``create``."""
    path = _signing_path(mac_key_path)
    if not path.exists():
        if not create:
            raise EvidenceKeyError(f"{path}: no signing key")
        write_private(path, _pem(Ed25519PrivateKey.generate()), replace=False)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise EvidenceKeyError(f"{path}: cannot read the signing key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceKeyError(f"{path}: not an Ed25519 key")
    retired_path = path.with_name(path.name + ".retired")
    retired = tuple(
        line.strip() for line in retired_path.read_text(encoding="ascii").splitlines()
        if line.strip()
    ) if retired_path.exists() else ()
    return SigningKey(path, key, retired)


def rotate_signing_key(mac_key_path: Path) -> SigningKey:
    """A fresh signing key; the old public key is kept so older anchors still verify."""
    old = load_signing_key(mac_key_path)
    retired_path = old.path.with_name(old.path.name + ".retired")
    fd = os.open(retired_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as f:
        f.write(old.public_b64 + "\n")
    write_private(old.path, _pem(Ed25519PrivateKey.generate()))
    return load_signing_key(mac_key_path, create=False)
