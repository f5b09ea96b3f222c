"""Mosquitto credentials for per-device topics: a password file (Mosquitto's own
hash format) and an ACL so that each device can publish only to its own topic.

One broker serves a whole deployment, so both files are written for every site
of it at once (one call, all sites):

* each active device gets a user named after it (device names are unique in the
  deployment), allowed to write only ``coverwatch/<its site>/devices/<device>/events``;
* the server gets one user allowed to read every site's topics;
* passwords are minted here, shown once, and kept only as Mosquitto hashes
  (PBKDF2-SHA512, ``$7$<iterations>$<salt>$<hash>``, as ``mosquitto_passwd``
  writes them); entries already in the password file are kept, so running the
  command again does not break enrolled devices.
"""

from __future__ import annotations

import base64
import hashlib
import os
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


def _replace(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` atomically: Mosquitto (re)reading the file on a
    reload never sees half of it, and the password file is never world-readable."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True, slots=True)
class AclFiles:
    """What was written, and the passwords minted now (shown once)."""

    minted: Mapping[str, str]
    users: tuple[str, ...]


def write_acl(sites: Mapping[str, Iterable[str]], passwd: Path, acl: Path, *,
              rotate: Iterable[str] = (), server_user: str = SERVER_USER) -> AclFiles:
    """Write the password file and ACL for a deployment: ``sites`` maps each site id
    to its devices' names. Returns the passwords minted now."""
    site_of: dict[str, str] = {}
    for site_id in sites:
        if not site_id or any(c in site_id for c in "/+#: \n\r"):
            raise ValueError(f"site id {site_id!r} cannot be an MQTT topic level")
        for name in sites[site_id]:
            if name in site_of and site_of[name] != site_id:
                raise ValueError(f"device {name!r} is at two sites ({site_of[name]}, "
                                 f"{site_id}): device names are unique in a deployment")
            site_of[name] = site_id
    names = sorted(site_of)
    if server_user in names:
        raise ValueError(f"a device may not be named {server_user!r} (the server's MQTT user)")
    for name in names:
        if not name or any(c in name for c in "/+#: \n\r"):
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
    _replace(passwd, "".join(f"{u}:{h}\n" for u, h in hashes.items()), mode=0o600)
    ids = sorted(sites)
    lines = [f"# coverwatch sites {', '.join(ids)}: written by `coverwatch mqtt acl`",
             f"user {server_user}", *(f"topic read coverwatch/{i}/#" for i in ids), ""]
    for name in names:
        lines += [f"user {name}",
                  f"topic write coverwatch/{site_of[name]}/devices/{name}/events", ""]
    _replace(acl, "\n".join(lines))
    return AclFiles(minted, (server_user, *names))
