"""Mosquitto credentials for per-device topics: a password file (Mosquitto's own
hash format) and an ACL so that each device can publish only to its own topic.

* each active device gets a user named after it, allowed to write only
  ``coverwatch/<site>/devices/<device>/events``;
* the server gets a user allowed to read the site's topics;
* passwords are minted here, shown once, and kept only as Mosquitto hashes
  (PBKDF2-SHA512, ``$7$<iterations>$<salt>$<hash>``, as ``mosquitto_passwd``
  writes them); entries already in the password file are kept, so running the
  command again does not break enrolled devices.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVER_USER", "AclFiles", "mosquitto_hash", "write_acl"]

SERVER_USER = "coverwatch-server"
_ITERATIONS = 101  # mosquitto_passwd's default


def mosquitto_hash(password: str, *, salt: bytes | None = None,
                   iterations: int = _ITERATIONS) -> str:
    """A password hash in Mosquitto 2's password-file format."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def _read_passwords(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        user, sep, hashed = line.partition(":")
        if sep and user and hashed:
            out[user] = hashed
    return out


@dataclass(frozen=True, slots=True)
class AclFiles:
    """What was written, and the passwords minted now (shown once)."""

    minted: Mapping[str, str]
    users: tuple[str, ...]


def write_acl(site_id: str, devices: Iterable[str], passwd: Path, acl: Path, *,
              rotate: Iterable[str] = (), server_user: str = SERVER_USER) -> AclFiles:
    """Write the password file and ACL for ``devices``; returns the new passwords."""
    names = sorted(set(devices))
    if server_user in names:
        raise ValueError(f"a device may not be named {server_user!r} (the server's MQTT user)")
    for name in names:
        if not name or any(c in name for c in "/+#: \n"):
            raise ValueError(f"device name {name!r} cannot be an MQTT user and topic level")
    existing = _read_passwords(passwd)
    again = set(rotate)
    minted: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for user in [server_user, *names]:
        if user in existing and user not in again:
            hashes[user] = existing[user]
            continue
        password = secrets.token_urlsafe(24)
        minted[user] = password
        hashes[user] = mosquitto_hash(password)
    passwd.write_text("".join(f"{u}:{h}\n" for u, h in hashes.items()), encoding="utf-8")
    passwd.chmod(0o600)
    lines = [f"# coverwatch site {site_id}: written by `coverwatch mqtt acl`",
             f"user {server_user}", f"topic read coverwatch/{site_id}/#", ""]
    for name in names:
        lines += [f"user {name}", f"topic write coverwatch/{site_id}/devices/{name}/events", ""]
    acl.write_text("\n".join(lines), encoding="utf-8")
    return AclFiles(minted, (server_user, *names))
