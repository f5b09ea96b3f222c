#!/usr/bin/env python3
"""A standalone verifier of coverwatch evidence packs: copy this one file out and run it.

It needs only the Python standard library and ``cryptography`` (for Ed25519), never
coverwatch: ``python3 standalone.py PACK.zip [--public-key site.pem] [--heads FILE]``.
It checks, and names the part of any failure:

* ``manifest.json``: signed (Ed25519, by ``--public-key`` if given), and every member's
  SHA-256 as listed, none missing, none added;
* ``audit-anchor.json``: signed, of the pack's site, and agreeing with the audit segment;
* ``audit.jsonl``: each entry's hash recomputed from its content, each linked to the one
  before (a pack's segment is contiguous from version 2);
* ``tree-head.json``: the signed tree head the pack is proved against, of the pack's site;
  the head before it (signed, named by the head's ``prev``) and the RFC 9162 consistency
  proof between the two;
* ``proofs.json``: every event's key recomputed from what it says, and every event and
  audit entry's leaf recomputed from the record and checked with its RFC 9162 inclusion
  proof against the head; records older than the log (``unlogged``) are counted;
* ``--heads FILE``: a copy of the site's tree heads kept elsewhere (a witness): the pack's
  head should be one of them, and no witnessed head of its size may have another root.

Exit 0 when every check holds, 1 naming each that does not, 2 for bad usage. It does
not re-run the cover engine: ``coverwatch replay --pack`` and ``coverwatch evidence
verify`` do that. ``docs/evidence-format.md`` specifies every format used here; the
hashing and proof checks repeat ``coverwatch.domain.merkle`` and the store's key and
hash functions on purpose (this file stands alone), and the unit tests hold them equal.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["HEAD_KIND", "PACK_KIND", "Result", "audit_entry_hash", "canonical", "check_pack",
           "event_key", "leaf_hash", "main", "read_public_key", "verify_consistency",
           "verify_document", "verify_inclusion"]

PACK_KIND = "coverwatch.evidence-pack"
HEAD_KIND = "coverwatch.tree-head"
ANCHOR_KIND = "coverwatch.audit-anchor"
_KEY_FIELD = {"fix": "officer", "duty": "officer", "gate": "post", "flag": "flag"}


# -- canonical JSON (as orjson.dumps(v, option=OPT_SORT_KEYS) writes it) ----------------------

def _float(v: float) -> str:
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError("JSON has no NaN or infinity")
    r = repr(v)
    if "e" not in r or "e+" in r:
        return r
    mant, _, exp = r.partition("e")
    e = int(exp)
    if e >= -5:  # orjson writes 1e-05 as 0.00001 but 1e-06 as 1e-6
        neg, digits = mant.startswith("-"), mant.lstrip("-").replace(".", "")
        return ("-" if neg else "") + "0." + "0" * (-e - 1) + digits
    return f"{mant}e{e}"


def _canon(v: Any, out: list[str]) -> None:
    if v is None or isinstance(v, bool):
        out.append({None: "null", True: "true", False: "false"}[v])
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_float(v))
    elif isinstance(v, str):
        out.append(json.dumps(v, ensure_ascii=False))
    elif isinstance(v, list | tuple):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _canon(item, out)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        for i, k in enumerate(sorted(v)):
            if i:
                out.append(",")
            out.append(json.dumps(str(k), ensure_ascii=False) + ":")
            _canon(v[k], out)
        out.append("}")
    else:
        raise TypeError(f"not a JSON value: {type(v).__name__}")


def canonical(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no spaces: the bytes hashes and signatures cover."""
    out: list[str] = []
    _canon(value, out)
    return "".join(out).encode()


# -- signatures --------------------------------------------------------------------------------

def key_id(public_b64: str) -> str:
    return "ed25519:" + hashlib.sha256(base64.b64decode(public_b64)).hexdigest()[:16]


def read_public_key(text: str) -> str:
    """A public key as base64 of its 32 raw bytes, from PEM (``coverwatch audit keys``) or
    from one base64 line."""
    if "BEGIN PUBLIC KEY" in text:
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()
    line = text.strip().splitlines()[-1].strip() if text.strip() else ""
    if len(base64.b64decode(line, validate=True)) != 32:
        raise ValueError("not a 32-byte Ed25519 public key")
    return line


def verify_document(doc: Any, trusted: Sequence[str] | None) -> str | None:
    """None if ``doc``'s signature verifies under a trusted key (any it names if None),
    else why not."""
    if not isinstance(doc, dict):
        return "not a signed document"
    public, signature = doc.get("public_key"), doc.get("signature")
    if not isinstance(public, str) or not isinstance(signature, str):
        return "not signed"
    if trusted is not None and public not in trusted:
        return f"signed by an untrusted key {key_id(public)}"
    body = {k: v for k, v in doc.items() if k != "signature"}
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(
            base64.b64decode(signature), canonical(body))
    except (InvalidSignature, ValueError, TypeError):
        return "signature does not match (edited or forged)"
    return None


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


# -- the records' own hashes -------------------------------------------------------------------

def _num(value: Any) -> str:
    try:
        return "" if value is None else repr(float(value))
    except (TypeError, ValueError):
        return repr(value)


def event_key(row: dict[str, Any]) -> str:
    """``kind|officer/post/flag|t_us|device|digest``: the key the store gave the event."""
    kind = row.get("kind")
    if kind == "fix":
        reported = row.get("accuracy_source") in (None, "reported", "hdop")
        parts = [_num(row.get("x")), _num(row.get("y")),
                 _num(row.get("accuracy")) if reported else ""]
    elif kind == "duty":
        caps = row.get("capabilities")
        if caps is not None and not isinstance(caps, str):
            caps = ",".join(sorted(caps))
        parts = [str(bool(row.get("on"))), caps or ""]
    elif kind == "gate":
        parts = [str(bool(row.get("open")))]
    else:
        parts = [str(bool(row.get("on")))]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
    device = row.get("device")
    ident = row.get(_KEY_FIELD.get(str(kind), "officer"))
    return f"{kind}|{ident}|{row.get('t_us')}|{device if isinstance(device, str) else ''}|{digest}"


def audit_entry_hash(e: dict[str, Any]) -> str:
    body = {k: e.get(k) for k in ("id", "at", "actor", "action", "subject", "details",
                                  "prev_hash")}
    return hashlib.sha256(canonical(body)).hexdigest()


# -- the pack ----------------------------------------------------------------------------------

@dataclass
class Result:
    """What :func:`check_pack` found: ``problems`` name the part and why; ``notes`` say
    what was confirmed."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, part: str, why: str) -> None:
        self.problems.append(f"{part}: {why}")


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def check_pack(data: bytes, trusted: Sequence[str] | None = None,
               witnessed: Sequence[dict[str, Any]] | None = None) -> Result:
    """Every check of the module docstring; ``witnessed``: tree heads kept elsewhere."""
    res = Result()
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        files = {n: z.read(n) for n in z.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        res.fail("pack", f"not a readable zip archive ({e})")
        return res
    try:
        manifest = json.loads(files.pop("manifest.json"))
        if not isinstance(manifest, dict) or manifest.get("kind") != PACK_KIND:
            raise ValueError
    except (KeyError, ValueError):
        res.fail("manifest.json", "missing, not JSON or not an evidence pack's manifest")
        return res
    why = verify_document(manifest, trusted)
    if why is not None:
        res.fail("manifest.json", why)
    members = manifest.get("members")
    listed: dict[str, Any] = members if isinstance(members, dict) else {}
    for name, digest in sorted(listed.items()):
        if name not in files:
            res.fail(name, "missing from the pack")
        elif hashlib.sha256(files[name]).hexdigest() != digest:
            res.fail(name, "edited: its SHA-256 does not match the manifest")
    for name in sorted(set(files) - set(listed)):
        res.fail(name, "not listed in the manifest")
    if not res.ok:
        return res
    try:
        _check_contents(files, manifest, trusted, witnessed, res)
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # malformed, yet signed
        res.fail("pack", f"a member is malformed: {type(e).__name__}: {e}")
    return res


def _check_contents(files: dict[str, bytes], manifest: dict[str, Any],
                    trusted: Sequence[str] | None, witnessed: Sequence[dict[str, Any]] | None,
                    res: Result) -> None:
    version, site = int(manifest.get("v", 1)), manifest.get("site")
    entries = _lines(files["audit.jsonl"])
    _check_audit(entries, contiguous=version >= 2, res=res)
    anchor = json.loads(files["audit-anchor.json"])
    why = verify_document(anchor, trusted)
    if why is not None:
        res.fail("audit-anchor.json", why)
    elif anchor.get("site") != site:
        res.fail("audit-anchor.json", f"anchors site {anchor.get('site')!r}, "
                                      f"the pack is of {site!r}")
    else:
        for e in entries:
            if e["id"] == anchor.get("head_id") and e["hash"] != anchor.get("head_hash"):
                res.fail("audit-anchor.json", f"anchored entry {e['id']} differs from "
                                              "audit.jsonl")
    if version < 2:
        res.notes.append("a version 1 pack: it carries no inclusion proofs")
        return
    for name in ("tree-head.json", "proofs.json"):
        if name not in files:
            res.fail(name, "missing: a version 2 pack carries it")
            return
    head = _check_head(json.loads(files["tree-head.json"]), site, trusted, witnessed, res)
    if head is None:
        return
    rows = _lines(files["events.jsonl"])
    proofs = json.loads(files["proofs.json"])
    _check_proofs(proofs, head, rows, entries, res)
    _check_alerts(files, manifest, _check_purges(files, manifest, proofs, head, res), rows, res)


def _check_audit(entries: list[dict[str, Any]], *, contiguous: bool, res: Result) -> None:
    prev: dict[str, Any] | None = None
    for n, e in enumerate(entries, 1):
        if audit_entry_hash(e) != e.get("hash"):
            res.fail("audit.jsonl", f"line {n} (entry {e.get('id')}) does not match its hash")
            return
        if prev is not None and (contiguous or e["id"] == prev["id"] + 1):
            if e["id"] != prev["id"] + 1:
                res.fail("audit.jsonl", f"entries {prev['id'] + 1}-{e['id'] - 1} are missing "
                                        f"between entry {prev['id']} and entry {e['id']}")
                return
            if e["prev_hash"] != prev["hash"]:
                res.fail("audit.jsonl", f"entry {e['id']} does not link to entry {prev['id']}")
                return
        prev = e


def _check_head(doc: dict[str, Any], site: Any, trusted: Sequence[str] | None,
                witnessed: Sequence[dict[str, Any]] | None, res: Result) -> dict[str, Any] | None:
    head, prev = doc.get("head"), doc.get("previous")
    if not isinstance(head, dict) or head.get("kind") != HEAD_KIND:
        res.fail("tree-head.json", "holds no tree head")
        return None
    why = verify_document(head, trusted)
    if why is not None:
        res.fail("tree-head.json", f"the tree head: {why}")
        return None
    if head.get("site") != site:
        res.fail("tree-head.json", f"a head of site {head.get('site')!r}, the pack is of "
                                   f"{site!r}")
        return None
    if prev is not None:
        why = verify_document(prev, trusted)
        if why is not None:
            res.fail("tree-head.json", f"the previous head: {why}")
        elif head.get("prev") != hashlib.sha256(canonical(prev)).hexdigest():
            res.fail("tree-head.json", "the previous head is not the one the head names")
        elif not verify_consistency(int(prev["size"]), int(head["size"]),
                                    bytes.fromhex(prev["root"]), bytes.fromhex(head["root"]),
                                    [bytes.fromhex(h) for h in doc.get("consistency") or []]):
            res.fail("tree-head.json", f"the head of {head['size']} leaves does not extend the "
                                       f"previous head of {prev['size']} (consistency proof "
                                       "fails): the log was rewritten between them")
        else:
            res.notes.append(f"the head extends the previous head ({prev['size']} leaves, "
                             f"{prev.get('at')}): consistency proof holds")
    elif head.get("prev") is not None:
        res.notes.append("the head before the pack's head is not in the pack")
    if witnessed is not None:
        _check_witnessed(head, witnessed, res)
    return head


def _check_witnessed(head: dict[str, Any], witnessed: Sequence[dict[str, Any]],
                     res: Result) -> None:
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


def _check_proofs(proofs: dict[str, Any], head: dict[str, Any], rows: list[dict[str, Any]],
                  entries: list[dict[str, Any]], res: Result) -> None:
    size, root = int(head["size"]), bytes.fromhex(head["root"])
    if proofs.get("tree_size") != size or proofs.get("root") != head["root"]:
        res.fail("proofs.json", "its proofs are not against the pack's tree head")
        return
    unlogged = proofs.get("unlogged") or {}
    records = [("events", "events.jsonl", "event",
                [(r["id"], {"key": event_key(r)}) for r in rows]),
               ("audit", "audit.jsonl", "audit entry",
                [(e["id"], {"hash": e["hash"]}) for e in entries])]
    for r in rows:
        if event_key(r) != r.get("key"):
            res.fail("events.jsonl", f"event {r['id']} says other than its stored key "
                                     f"{r.get('key')!r}: it was changed after it was stored")
    for section, part, what, items in records:
        given: dict[str, Any] = proofs.get(section) or {}
        kind = "event" if section == "events" else "audit"
        ids = {str(i) for i, _ in items}
        for extra in sorted(set(given) - ids):
            res.fail("proofs.json", f"proves {what} {extra}, which is not in {part}")
        logged = [int(i) for i in given]
        bad = 0
        for ident, body in items:
            proof = given.get(str(ident))
            if proof is None:
                if ident not in set(unlogged.get(section) or []):
                    res.fail(part, f"{what} {ident} has no inclusion proof")
                elif logged and ident > min(logged):
                    res.fail(part, f"{what} {ident} is said to predate the log, yet is newer "
                                   f"than logged {what} {min(logged)}")
                continue
            leaf = canonical({**body, "kind": kind, "ref": str(ident)})
            if not verify_inclusion(int(proof["leaf"]), size, leaf_hash(leaf),
                                    [bytes.fromhex(h) for h in proof["path"]], root):
                bad += 1
                if bad <= 5:
                    res.fail(part, f"{what} {ident} is not in the log as leaf {proof['leaf']} "
                                   f"of the tree head of {size} (its inclusion proof fails): "
                                   "changed after it was logged, or never logged")
        if bad > 5:
            res.fail(part, f"and {bad - 5} more {what}(s) fail their inclusion proofs")
        if not bad:
            old = len(items) - len(logged)
            res.notes.append(f"{len(logged)} {what}(s) proved in the log of {size} leaves"
                             + (f"; {old} predate the log" if old else ""))


# -- what was purged, and alerts against lapses -------------------------------------------------

def _us(iso: str) -> int:
    from datetime import datetime
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def _check_purges(files: dict[str, bytes], manifest: dict[str, Any], proofs: dict[str, Any],
                  head: dict[str, Any], res: Result) -> list[dict[str, Any]]:
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
        if audit_entry_hash(e) != e.get("hash") or e.get("action") != "retention.purged" or \
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


def _check_alerts(files: dict[str, bytes], manifest: dict[str, Any], spans: list[dict[str, Any]],
                  rows: list[dict[str, Any]], res: Result) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Check a coverwatch evidence pack, without "
                                             "coverwatch.")
    ap.add_argument("pack", help="the evidence pack (.zip)")
    ap.add_argument("--public-key", help="trust only this Ed25519 public key (PEM or base64)")
    ap.add_argument("--heads", help="a witnessed copy of the site's tree heads (JSON lines)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        with open(args.pack, "rb") as f:
            data = f.read()
        trusted = None
        if args.public_key:
            with open(args.public_key, encoding="ascii") as f:
                trusted = (read_public_key(f.read()),)
        witnessed = None
        if args.heads:
            with open(args.heads, "rb") as f:
                witnessed = [d for d in _lines(f.read()) if d.get("kind") == HEAD_KIND
                             and verify_document(d, trusted) is None]
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = check_pack(data, trusted, witnessed)
    if args.json:
        print(json.dumps({"ok": res.ok, "problems": res.problems, "notes": res.notes}))
    else:
        for note in res.notes:
            print(f"ok {note}")
        for p in res.problems:
            print(f"FAILED {p}")
        print(f"{'ok' if res.ok else 'FAILED'} {args.pack}: "
              + ("every part verified" if res.ok else f"{len(res.problems)} problem(s)"))
        if res.ok and trusted is None:
            print("note: signed by the key the pack names; pass --public-key to check it is "
                  "the site's")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
