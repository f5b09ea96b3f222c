"""The standalone verifier's proof checks: RFC 9162 inclusion and consistency proofs, and
RFC 3161 time-stamp tokens checked against a time-stamping authority's certificate.

Part of the standalone verifier (:mod:`coverwatch.evidence.standalone`), built with it
into one file (:mod:`coverwatch.evidence.verifierfile`). Like it, it needs only the
standard library and ``cryptography``
(x509 and signatures; the token's DER is read here, no ``openssl`` is run). It repeats
``coverwatch.domain.merkle`` on purpose; the unit tests hold the two equal.

The purge and lapse checks (``purges.json``, alerts against lapses) and the audit
segment's coverage of the window's alerts are here too, so that each file stays small.

A time-stamp reply is accepted when: its status grants it; its TSTInfo's message
imprint is the hash of the data (the head's canonical JSON); the signed attributes
name the TSTInfo's digest; their signature verifies under the signing certificate the
token carries; that certificate is for time-stamping (extended key usage) and was
issued by the examiner's authority certificate, directly or through certificates the
token carries, and was valid at the time-stamp's time.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

__all__ = ["Findings", "check_alerts", "check_purges", "check_segment", "check_timestamp",
           "check_witnessed", "compare_copy",
           "leaf_hash", "timestamp_time", "verify_consistency", "verify_inclusion",
           "verify_timestamp_token"]


class Findings(Protocol):
    """Where a check writes what it found (the verifier's ``Result``)."""

    notes: list[str]

    def fail(self, member: str, why: str) -> None: ...


# -- RFC 9162 Merkle tree ----------------------------------------------------------------------

def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 2.1.3.2: is leaf hash ``leaf`` at ``index`` of the tree ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: is the tree ``first_root`` of ``first`` leaves a prefix of the other?"""
    if not 0 <= first <= second:
        return False
    if first == 0:
        return not proof
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


# -- DER, as much as a time-stamp token needs --------------------------------------------------

class _Bad(ValueError):
    pass


def _items(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """The DER elements in ``data``: (tag, content, whole element) each."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise _Bad("truncated DER")
        tag, n = data[pos], data[pos + 1]
        head = 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4 or pos + 2 + k > len(data):
                raise _Bad("unsupported DER length")
            n, head = int.from_bytes(data[pos + 2:pos + 2 + k], "big"), 2 + k
        end = pos + head + n
        if end > len(data):
            raise _Bad("truncated DER")
        out.append((tag, data[pos + head:end], data[pos:end]))
        pos = end
    return out


def _oid(content: bytes) -> str:
    first, parts, v = content[0], [], 0
    parts += [str(min(first // 40, 2)), str(first - 40 * min(first // 40, 2))]
    for b in content[1:]:
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(str(v))
            v = 0
    return ".".join(parts)


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256, "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512}
_SIGNED_DATA, _TST_INFO = "1.2.840.113549.1.7.2", "1.2.840.113549.1.9.16.1.4"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"


def _digest(alg: type[hashes.HashAlgorithm], data: bytes) -> bytes:
    h = hashes.Hash(alg())
    h.update(data)
    return h.finalize()


def _hash_of(alg_id: bytes) -> type[hashes.HashAlgorithm]:
    oid = _oid(_items(alg_id)[0][1])
    if oid not in _HASHES:
        raise _Bad(f"unsupported hash algorithm {oid}")
    return _HASHES[oid]


def _token(reply: bytes) -> tuple[bytes, list[x509.Certificate], list[tuple[int, bytes, bytes]]]:
    """The TSTInfo's DER, the token's certificates and its one SignerInfo's elements."""
    resp = _items(_items(reply)[0][1])
    status = _items(resp[0][1])
    if int.from_bytes(status[0][1], "big") not in (0, 1):
        raise _Bad("the authority refused the request (status "
                   f"{int.from_bytes(status[0][1], 'big')})")
    if len(resp) < 2:
        raise _Bad("the reply holds no time-stamp token")
    info = _items(resp[1][1])
    if _oid(info[0][1]) != _SIGNED_DATA:
        raise _Bad("the token is not CMS signed data")
    signed = _items(_items(info[1][1])[0][1])
    encap = _items(signed[2][1])
    if _oid(encap[0][1]) != _TST_INFO:
        raise _Bad("the token does not hold a TSTInfo")
    tst = _items(_items(encap[1][1])[0][1])[0][2]  # [0] EXPLICIT OCTET STRING
    certs = [x509.load_der_x509_certificate(c[2])
             for t, body, _ in signed[3:-1] if t == 0xA0 for c in _items(body)]
    signers = _items(signed[-1][1])
    if len(signers) != 1:
        raise _Bad(f"the token has {len(signers)} signers, not one")
    return tst, certs, _items(signers[0][1])


def timestamp_time(reply: bytes) -> str:
    """The token's genTime, as it says it (``YYYYMMDDhhmmss[.f]Z``)."""
    tst, _, _ = _token(reply)
    return _items(_items(tst)[0][1])[4][1].decode()


def _signer_cert(sid: tuple[int, bytes, bytes], certs: list[x509.Certificate]
                 ) -> x509.Certificate:
    for cert in certs:
        if sid[0] == 0x30:  # IssuerAndSerialNumber
            issuer, serial = _items(sid[1])
            if cert.serial_number == int.from_bytes(serial[1], "big", signed=True) and \
                    cert.issuer.public_bytes() == issuer[2]:
                return cert
        else:
            try:  # [0] SubjectKeyIdentifier
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == sid[1]:
                return cert
    raise _Bad("the token does not carry its signing certificate (ask with certReq)")


def _chains_to(cert: x509.Certificate, ca: x509.Certificate, certs: list[x509.Certificate],
               at: _dt.datetime) -> None:
    for _ in range(6):
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise _Bad(f"certificate {cert.subject.rfc4514_string()} was not valid then")
        if cert.issuer == ca.subject:
            try:
                cert.verify_directly_issued_by(ca)
                return
            except (ValueError, TypeError, InvalidSignature):
                pass
        up = [c for c in certs if c.subject == cert.issuer and c != cert]
        if not up:
            break
        cert.verify_directly_issued_by(up[0])
        cert = up[0]
    raise _Bad("the signing certificate was not issued by the given authority")


def verify_timestamp_token(reply: bytes, data: bytes, ca_pem: bytes) -> str | None:
    """None if ``reply`` (an RFC 3161 TimeStampResp, DER) time-stamps ``data`` under the
    authority certificate ``ca_pem`` (PEM, one or more: any may be the issuer), else why."""
    try:
        tst, certs, si = _token(reply)
        fields = _items(_items(tst)[0][1])
        imprint = _items(fields[2][1])
        if _digest(_hash_of(imprint[0][1]), data) != imprint[1][1]:
            return "it time-stamps other data than the head"
        when = _dt.datetime.strptime(fields[4][1].decode()[:14], "%Y%m%d%H%M%S").replace(
            tzinfo=_dt.UTC)
        alg = _hash_of(si[2][1])
        attrs = next((e for e in si[3:] if e[0] == 0xA0), None)
        if attrs is None:
            raise _Bad("the token has no signed attributes")
        digests = [_items(a[1])[1] for a in _items(attrs[1])
                   if _oid(_items(a[1])[0][1]) == _MESSAGE_DIGEST]
        if len(digests) != 1 or _items(digests[0][1])[0][1] != _digest(alg, tst):
            return "its signed attributes do not name the TSTInfo's digest"
        signature = next(e for e in si[3:] if e[0] == 0x04)[1]
        signer = _signer_cert(si[1], certs)
        key, signed_attrs = signer.public_key(), b"\x31" + attrs[2][1:]
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed_attrs, ec.ECDSA(alg()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed_attrs, padding.PKCS1v15(), alg())
        else:
            raise _Bad("unsupported signing key")
        usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if x509.oid.ExtendedKeyUsageOID.TIME_STAMPING not in usage:
            raise _Bad("the signing certificate is not for time-stamping")
        cas = x509.load_pem_x509_certificates(ca_pem)
        why = "the signing certificate was not issued by the given authority"
        for ca in cas:
            try:
                _chains_to(signer, ca, certs, when)
                return None
            except (_Bad, ValueError, TypeError, InvalidSignature) as e:
                why = str(e) or why
        return why
    except InvalidSignature:
        return "its signature does not verify (altered, or another key)"
    except x509.ExtensionNotFound:
        return "the signing certificate has no extended key usage"
    except (_Bad, ValueError, IndexError, StopIteration) as e:
        return f"not a readable time-stamp token ({e or type(e).__name__})"


def check_timestamp(doc: dict[str, Any], head: bytes, ca: bytes, res: Findings) -> None:
    """``tree-head.json``'s RFC 3161 time-stamp of ``head`` (its canonical JSON) verifies
    under the authority's certificate ``ca``."""
    stamp = doc.get("timestamp")
    if not isinstance(stamp, str):
        res.fail("tree-head.json", "the head carries no RFC 3161 time-stamp")
        return
    reply = base64.b64decode(stamp)
    why = verify_timestamp_token(reply, head, ca)
    if why is not None:
        res.fail("tree-head.json", f"the head's RFC 3161 time-stamp: {why}")
    else:
        res.notes.append(f"the head was time-stamped at {timestamp_time(reply)} by an "
                         "authority under --tsa-ca")


def compare_copy(pack: bytes, mine: bytes, res: Findings) -> None:
    """Say whether the pack's own ``verify_pack.py`` is the file running: the copy in a
    pack is a convenience, which an insider re-signing the pack could replace."""
    try:
        theirs = zipfile.ZipFile(io.BytesIO(pack)).read("verify_pack.py")
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError):
        return
    res.notes.append("the pack's verify_pack.py is this file" if theirs == mine else
                     "the pack's verify_pack.py differs from this file (another release's, "
                     "or replaced): rely on this one")


# -- witnessed heads ------------------------------------------------------------------------

def check_witnessed(head: dict[str, Any], witnessed: Sequence[dict[str, Any]],
                    res: Findings, *, canonical: Callable[[Any], bytes]) -> None:
    """The pack's head against heads kept elsewhere (a witness's copy)."""
    digest = hashlib.sha256(canonical(head)).hexdigest()
    mine = [w for w in witnessed if w.get("site") == head.get("site")]
    if any(hashlib.sha256(canonical(w)).hexdigest() == digest for w in mine):
        res.notes.append(f"the pack's tree head is one of the {len(mine)} witnessed heads")
        return
    for w in mine:
        if w.get("size") == head.get("size") and w.get("root") != head.get("root"):
            res.fail("tree-head.json", f"a witnessed head of {w.get('size')} leaves "
                                       f"({w.get('at')}) has another root: the log the pack "
                                       "is proved against is not the one witnessed")
            return
    res.notes.append("the pack's tree head is not among the witnessed heads (made after "
                     "the copy, or never sent)")


# -- what was purged, and alerts against lapses -------------------------------------------------

def _us(iso: str) -> int:
    from datetime import datetime
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def check_purges(files: dict[str, bytes], manifest: dict[str, Any], proofs: dict[str, Any],
                 head: dict[str, Any], res: Findings, *, entry_hash: Callable[[Any], str],
                 canonical: Callable[[Any], bytes]) -> list[dict[str, Any]]:
    """``purges.json``: each purge record matches its ``retention.purged`` audit entry, proved
    in the log; every span without data names purge records of the pack and every purged
    part of the window lies in one; no lapse is given where positions were purged. Returns
    the spans without data."""
    if "purges.json" not in files:
        res.notes.append("the pack predates purges.json: purged history is not declared")
        return []
    doc = json.loads(files["purges.json"])
    records, spans = doc.get("records") or [], doc.get("no_data") or []
    since, until = int(manifest["since_us"]), int(manifest["until_us"])
    size, root, given = int(head["size"]), bytes.fromhex(head["root"]), proofs.get("purges") or {}
    for p in records:
        e = p.get("audit") or {}
        told = e.get("details") or {}
        if entry_hash(e) != e.get("hash") or e.get("action") != "retention.purged" or \
                (told.get("before_us"), told.get("removed")) != (p["before_us"], p["removed"]):
            res.fail("purges.json", f"purge {p.get('id')} does not match a retention.purged "
                                    "audit entry")
            continue
        proof = given.get(str(e["id"]))
        leaf = canonical({"hash": e["hash"], "kind": "audit", "ref": str(e["id"])})
        if proof is None or not verify_inclusion(int(proof["leaf"]), size, leaf_hash(leaf),
                                                 [bytes.fromhex(h) for h in proof["path"]], root):
            res.fail("purges.json", f"purge {p['id']}: its audit entry {e['id']} is not proved "
                                    "in the log")
        gone = [(since, min(int(p["before_us"]), until))]
        for h0, h1 in p.get("held") or ():
            gone = [q for a, b in gone for q in ((a, min(b, h0)), (max(a, h1), b))]
        for a, b in gone:
            if b > a and not any(s["start_us"] <= a and b <= s["end_us"] for s in spans):
                res.fail("purges.json", f"purge {p['id']} removed the positions of "
                                        f"{a}-{b} (us), yet no span without data covers them")
    ids = {p.get("id") for p in records}
    for s in spans:
        if not s.get("purges") or not set(s["purges"]) <= ids:
            res.fail("purges.json", f"the span without data {s.get('start')} to {s.get('end')} "
                                    "names no purge record of the pack")
    for lp in json.loads(files["lapses.json"]):
        if any(lp["start_us"] < s["end_us"] and s["start_us"] < lp["end_us"] for s in spans):
            res.fail("lapses.json", f"the lapse at {lp['post']} / {lp['rule']} from "
                                    f"{lp['start']} lies where positions were purged")
    if records:
        res.notes.append(f"{len(records)} purge record(s) named, each proved by its audit "
                         f"entry; {len(spans)} span(s) without data, where no lapse is derived")
    return spans


def _late(rows: list[dict[str, Any]], b: int) -> str:
    """Events timed before ``b`` that arrived late or back-dated: they may have changed it."""
    late = [r["id"] for r in rows if int(r["t_us"]) <= b and (
        r.get("late") or int(r.get("received_us") or r["t_us"]) - int(r["t_us"]) > 300_000_000)]
    return f"; event(s) {late[:5]} before it arrived late or back-dated" if late else ""


def _same(a: dict[str, Any], lp: dict[str, Any]) -> bool:
    """Is ``a`` the alert of ``lp``: same rule and start, and the lapse outlasted its grace."""
    return (a["post"], a["rule"]) == (lp["post"], lp["rule"]) and lp.get("alert_at") is not None \
        and (
        a["lapse_start"] == lp["start_us"]
        or (bool(lp["clipped_start"]) and a["lapse_start"] < lp["start_us"]))


def check_alerts(files: dict[str, bytes], manifest: dict[str, Any], spans: list[dict[str, Any]],
                 rows: list[dict[str, Any]], res: Findings) -> None:
    """Lapse alerts against the lapses (which ``coverwatch evidence verify`` re-derives from
    the events): an alert with no such lapse, a lapse past its grace with no alert."""
    lapses = json.loads(files["lapses.json"])
    since, until = int(manifest["since_us"]), int(manifest["until_us"])
    # an alert whose lapse ended before the window is only here for its later handling
    alerts = [a for a in json.loads(files["alerts.json"]) if a.get("kind") == "lapse"
              and (a.get("resolved_at") or until) > since]
    bad = 0
    for a in alerts:
        if any(_same(a, lp) for lp in lapses):
            continue
        if any(a["lapse_start"] <= s["end_us"] and s["start_us"] <= (a.get("resolved_at")
                                                                    or until) for s in spans):
            res.notes.append(f"lapse alert {a['id']} falls where positions were purged: "
                             "not checked against a lapse")
            continue
        bad += 1
        res.fail("alerts.json", f"lapse alert {a['id']} ({a['post']} / {a['rule']}, lapse from "
                                f"{a['lapse_start']} us) has no lapse in what the events imply"
                                + _late(rows, a.get("resolved_at") or until))
    for lp in lapses:
        if lp.get("alert_at") is None or _us(lp["alert_at"]) > until or \
                any(_same(a, lp) for a in alerts):
            continue
        bad += 1
        fixes = any(r["kind"] == "fix" and lp["start_us"] <= int(r["t_us"]) <= lp["end_us"]
                    for r in rows)
        res.fail("lapses.json", f"the lapse at {lp['post']} / {lp['rule']} from {lp['start']} "
                                f"passed its grace at {lp['alert_at']}, yet no alert was raised"
                                + ("" if fixes else "; no position at all is recorded then "
                                   "(purged, and the purge not declared?)")
                                + _late(rows, lp["end_us"]))
    if not bad:
        res.notes.append(f"{len(alerts)} lapse alert(s) agree with the {len(lapses)} lapse(s)")


# -- the audit segment follows the window -----------------------------------------------------

_DELIVERY_KEY = ("level", "purpose", "target", "person", "address", "at_us")


def check_segment(files: dict[str, bytes], manifest: dict[str, Any],
                  entries: list[dict[str, Any]], res: Findings) -> None:
    """``audit.jsonl`` holds what was done about each alert of the window (``alert_at`` in
    [since, until]): its raising, each of its deliveries, its acknowledgement (or the close
    that acknowledged it) and its close. A segment cut short at either end, or chosen by
    wall-clock time alone for a window of historic data, is named by what it lacks."""
    since, until = int(manifest["since_us"]), int(manifest["until_us"])
    alerts = [a for a in json.loads(files["alerts.json"])
              if since <= int(a["alert_at"]) <= until]
    sent = json.loads(files.get("deliveries.json", b"[]"))
    have = {(e["subject"], e["action"]) for e in entries}
    told = {(e["subject"], e["action"], *(json.dumps((e.get("details") or {}).get(k))
                                          for k in _DELIVERY_KEY))
            for e in entries if str(e.get("action")).startswith("notification.")}
    span = f"entries {entries[0]['id']}-{entries[-1]['id']}" if entries else "no entries"
    missing: list[str] = []
    for a in alerts:
        s = f"alert:{a['id']}"
        if (s, "alert.raised") not in have:
            missing.append(f"the raising of alert {a['id']}")
        if a.get("acknowledged_by") and (s, "alert.acknowledged") not in have and not (
                a.get("closed_by") and (s, "alert.closed") in have):
            missing.append(f"the acknowledgement of alert {a['id']} by {a['acknowledged_by']}")
        if a.get("closed_by") and (s, "alert.closed") not in have:
            missing.append(f"the close of alert {a['id']} by {a['closed_by']}")
        for d in sent:
            if d.get("alert_id") == a["id"] and (s, f"notification.{d.get('outcome')}", *(
                    json.dumps(d.get(k)) for k in _DELIVERY_KEY)) not in told:
                missing.append(f"the delivery of alert {a['id']} to "
                               f"{d.get('person') or d.get('target')} at {d.get('at_us')} us")
    for m in missing[:5]:
        res.fail("audit.jsonl", f"the segment ({span}) lacks {m}: cut short, or not "
                                "following the pack's window")
    if len(missing) > 5:
        res.fail("audit.jsonl", f"and lacks {len(missing) - 5} more entries about the "
                                "window's alerts")
    if not missing:
        res.notes.append(f"the audit segment ({span}) holds the raising, deliveries, "
                         f"acknowledgement and close of each of the {len(alerts)} alert(s) "
                         "of the window")
