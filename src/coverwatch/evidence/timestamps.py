"""RFC 3161 time-stamps of signed tree heads: a time from an authority outside the operator.

The time-stamped data is the head's line (its canonical JSON bytes); the request
(``TimeStampReq``, SHA-256, certificate requested) is built here in DER and posted
to the authority's URL as ``application/timestamp-query``. The reply is kept,
base64, in ``tree-heads.tsr.jsonl`` beside the heads: ``{"site", "head", "tsr"}``
where ``head`` is the head's SHA-256 (as a later head's ``prev``). Checking a reply
needs only the authority's CA certificate: ``openssl ts -verify`` does it (the
standard tool an examiner has), see :func:`verify_timestamp`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from coverwatch.evidence.anchors import Finding
from coverwatch.evidence.treeheads import head_digest
from coverwatch.storage.private import private_dir

__all__ = ["Poster", "check_timestamps", "http_post", "timestamp_head", "timestamp_query",
           "tsr_file", "verify_timestamp"]

# DER of AlgorithmIdentifier { id-sha256 (2.16.840.1.101.3.4.2.1), NULL }
_SHA256_ALG = bytes.fromhex("300d06096086480165030402010500")
Poster = Callable[[str, bytes], bytes]


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x81, n])  # our bodies stay under 256 bytes
    return bytes([tag]) + length + body


def timestamp_query(data: bytes) -> bytes:
    """DER ``TimeStampReq`` v1 for SHA-256 of ``data``, asking for the authority's certificate."""
    imprint = _der(0x30, _SHA256_ALG + _der(0x04, hashlib.sha256(data).digest()))
    return _der(0x30, _der(0x02, b"\x01") + imprint + _der(0x01, b"\xff"))


def http_post(url: str, query: bytes) -> bytes:
    """Post a query to an RFC 3161 authority over HTTP(S); its reply's bytes."""
    import httpx

    r = httpx.post(url, content=query, timeout=30.0,
                   headers={"content-type": "application/timestamp-query"})
    r.raise_for_status()
    return r.content


def tsr_file(heads_path: Path) -> Path:
    return heads_path.with_name(heads_path.stem + ".tsr.jsonl")


def timestamp_head(head: dict[str, Any], url: str, heads_path: Path,
                   post: Poster = http_post) -> bytes:
    """Time-stamp ``head`` at ``url`` and append the reply beside ``heads_path``."""
    reply = post(url, timestamp_query(_canonical(head)))
    line = _canonical({"site": head.get("site"), "head": head_digest(head),
                       "tsr": base64.b64encode(reply).decode()})
    path = tsr_file(heads_path)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return reply


def verify_timestamp(head: dict[str, Any], tsr: bytes, ca_file: Path) -> str | None:
    """None if ``tsr`` is a valid time-stamp of ``head`` by an authority under ``ca_file``."""
    with tempfile.TemporaryDirectory() as tmp:
        data, reply = Path(tmp) / "head.json", Path(tmp) / "reply.tsr"
        data.write_bytes(_canonical(head))
        reply.write_bytes(tsr)
        done = subprocess.run(
            ["openssl", "ts", "-verify", "-data", str(data), "-in", str(reply),
             "-CAfile", str(ca_file)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    if done.returncode == 0 and "Verification: OK" in done.stdout:
        return None
    return (done.stdout + done.stderr).strip().splitlines()[-1] if (done.stdout + done.stderr
                                                                    ).strip() else "failed"


def check_timestamps(heads_path: Path, heads: list[dict[str, Any]],
                     ca_file: Path) -> tuple[int, list[Finding]]:
    """How many of ``heads`` carry a valid time-stamp under ``ca_file``; a bad one is named."""
    path = tsr_file(heads_path)
    replies: dict[str, list[bytes]] = {}
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                doc = orjson.loads(line)
                replies.setdefault(str(doc["head"]), []).append(base64.b64decode(doc["tsr"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    stamped, findings = 0, []
    for head in heads:
        for tsr in replies.get(head_digest(head), []):
            why = verify_timestamp(head, tsr, ca_file)
            if why is None:
                stamped += 1
                break
            findings.append(Finding("bad-timestamp", f"the time-stamp of the head of "
                                                     f"{head.get('at')} does not verify: {why}"))
    return stamped, findings
