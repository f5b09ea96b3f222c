#!/usr/bin/env python3
"""A standalone verifier of coverwatch evidence packs, in one file, ``verify_pack.py``:
built from ``coverwatch.evidence.standalone`` and ``standalone_proofs`` (its proof,
time-stamp, purge and lapse checks) by ``coverwatch.evidence.verifierfile``.

It needs only the Python standard library and ``cryptography``, never coverwatch:
``python3 verify_pack.py PACK.zip [--public-key site.pem] [--heads FILE] [--tsa-ca CA.pem]``.
It checks, and names the part of any failure:

* ``manifest.json``: signed (Ed25519, by ``--public-key`` if given), and every member's
  SHA-256 as listed, none missing, none added;
* ``audit-anchor.json``: signed, of the pack's site, and agreeing with the audit segment;
* ``audit.jsonl``: each entry's hash recomputed from its content, each linked to the one
  before (a pack's segment is contiguous from version 2);
* ``tree-head.json``: the signed tree head the pack is proved against, of the pack's site;
  the head before it (signed, named by the head's ``prev``) and the RFC 9162 consistency
  proof between the two;
* ``proofs.json``: every event's key recomputed from what it says, and the leaf of every
  event (with its arrival), audit entry, alert, delivery and rule version recomputed from
  the record and checked with its RFC 9162 inclusion proof against the head;
* ``--tsa-ca CA.pem``: the head's RFC 3161 time-stamp (in ``tree-head.json``) verifies
  under that authority's certificate, and its time is shown;
* ``--heads FILE``: a copy of the site's tree heads kept elsewhere (a witness): the pack's
  head should be one of them, and no witnessed head of its size may have another root;
* ``purges.json`` and ``alerts.json``: each purge proved by its audit entry, no lapse where
  positions were purged, and every lapse alert against a lapse past its grace;
* ``audit.jsonl`` follows the window: it holds the raising, deliveries, acknowledgement and
  close of every alert whose ``alert_at`` lies in the window; ``alerts.json`` holds every
  alert the segment records in the window and every one ``open-alerts.json`` (signed by
  the head's ``open_alerts``) lists in it;
* ``roster.json`` and ``orders.json`` are the window's view of ``briefing.json`` (signed by
  the head's ``briefing``); ``deliveries.json`` holds every delivery the segment records.

Exit 0 when every check holds, 1 naming each that does not, 2 for bad usage. It does not
re-run the engine. ``docs/evidence-format.md`` specifies every format; the hashing repeats
coverwatch's on purpose, the unit tests hold them equal.
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

from coverwatch.evidence import standalone_proofs as _proofs  # joined: see verifierfile
from coverwatch.evidence.standalone_proofs import leaf_hash, verify_consistency, verify_inclusion
from coverwatch.evidence.standalone_records import check_records, linked_entries

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
               witnessed: Sequence[dict[str, Any]] | None = None,
               tsa_ca: bytes | None = None) -> Result:
    """Every check of the module docstring; ``witnessed``: tree heads kept elsewhere;
    ``tsa_ca``: the time-stamping authority's certificate(s), PEM."""
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
        _check_contents(files, manifest, trusted, witnessed, res, tsa_ca)
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # malformed, yet signed
        res.fail("pack", f"a member is malformed: {type(e).__name__}: {e}")
    return res


def _check_contents(files: dict[str, bytes], manifest: dict[str, Any],
                    trusted: Sequence[str] | None, witnessed: Sequence[dict[str, Any]] | None,
                    res: Result, tsa_ca: bytes | None = None) -> None:
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
    for name in ("tree-head.json", "proofs.json", "deliveries.json"):
        if name not in files:
            res.fail(name, "missing: a version 2 pack carries it")
            return
    doc = json.loads(files["tree-head.json"])
    head = _check_head(doc, site, trusted, witnessed, res)
    if head is None:
        return
    if tsa_ca is not None:
        _proofs.check_timestamp(doc, canonical(head), tsa_ca, res)
    rows = _lines(files["events.jsonl"])
    proofs = json.loads(files["proofs.json"])
    linked = linked_entries(proofs, head, manifest, entries, res)
    _check_proofs(proofs, head, files, rows, entries, res, linked)
    spans = _proofs.check_purges(files, manifest, proofs, head, res,
                                 entry_hash=audit_entry_hash, canonical=canonical)
    _proofs.check_alerts(files, manifest, spans, rows, res)
    _proofs.check_segment(files, manifest, entries, res)
    check_records(files, manifest, head, entries, res, canonical=canonical)


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
        _proofs.check_witnessed(head, witnessed, res, canonical=canonical)
    return head


def _records(files: dict[str, bytes], rows: list[dict[str, Any]],
             entries: list[dict[str, Any]]) -> list[tuple[str, str, str, list[Any]]]:
    """Per section of proofs.json: its member, what it holds, and (id, kind, ref, leaf
    body) per record; alerts, deliveries and rule versions by position in their member."""
    alerts, deliveries, versions = (json.loads(files.get(n, b"[]")) for n in (
        "alerts.json", "deliveries.json", "rule-versions.json"))

    def _digest(record: Any) -> str:
        return hashlib.sha256(canonical(record)).hexdigest()

    return [
        ("events", "events.jsonl", "event",
         [(r["id"], "event", str(r["id"]), {"key": event_key(r),
                                             "received_us": r.get("received_us")})
          for r in rows]),
        ("audit", "audit.jsonl", "audit entry",
         [(e["id"], "audit", str(e["id"]), {"hash": e["hash"]}) for e in entries]),
        ("alerts", "alerts.json", "alert",
         [(n, "alert", str(a["id"]), {"hash": _digest(a)}) for n, a in enumerate(alerts)]),
        ("deliveries", "deliveries.json", "delivery",
         [(n, "delivery", str(d["alert_id"]),
           {"hash": _digest({k: v for k, v in d.items() if k != "at"})})
          for n, d in enumerate(deliveries)]),
        ("rule-versions", "rule-versions.json", "rule version",
         [(n, "rule-version", str(v["effective_us"]), {"hash": _digest(v)})
          for n, v in enumerate(versions)]),
    ]


def _check_proofs(proofs: dict[str, Any], head: dict[str, Any], files: dict[str, bytes],
                  rows: list[dict[str, Any]], entries: list[dict[str, Any]],
                  res: Result, linked: set[int]) -> None:
    size, root = int(head["size"]), bytes.fromhex(head["root"])
    if proofs.get("tree_size") != size or proofs.get("root") != head["root"]:
        res.fail("proofs.json", "its proofs are not against the pack's tree head")
        return
    unlogged = proofs.get("unlogged") or {}
    for r in rows:
        if event_key(r) != r.get("key"):
            res.fail("events.jsonl", f"event {r['id']} says other than its stored key "
                                     f"{r.get('key')!r}: it was changed after it was stored")
    for section, part, what, items in _records(files, rows, entries):
        if section not in proofs and items:  # a pack made before this kind was logged
            res.notes.append(f"{len(items)} {what}(s) of {part} carry no proofs (an older pack)")
            continue
        given, by_id = proofs.get(section) or {}, section in ("events", "audit")
        ids = {str(i) for i, _, _, _ in items}
        for extra in sorted(set(given) - ids):
            res.fail("proofs.json", f"proves {what} {extra}, which is not in {part}")
        logged = [int(i) for i in given]
        bad = unbound = 0
        for ident, kind, ref, body in items:
            proof = given.get(str(ident))
            name = f"{what} {ident}" if by_id else f"{what} {ident + 1} ({ref})"
            if proof is None:
                if section == "audit" and ident in linked:
                    continue
                if ident not in set(unlogged.get(section) or []):
                    res.fail(part, f"{name} has no inclusion proof")
                elif by_id and logged and ident > min(logged):
                    res.fail(part, f"{name} is said to predate the log, yet is newer "
                                   f"than logged {what} {min(logged)}")
                continue
            path = [bytes.fromhex(h) for h in proof["path"]]
            leaf = canonical({**body, "kind": kind, "ref": ref})
            ok = verify_inclusion(int(proof["leaf"]), size, leaf_hash(leaf), path, root)
            if not ok and kind == "event":  # a version 1 leaf: the key only, no arrival
                v1 = canonical({"key": body["key"], "kind": kind, "ref": ref})
                ok = verify_inclusion(int(proof["leaf"]), size, leaf_hash(v1), path, root)
                unbound += ok
            if not ok:
                bad += 1
                if bad <= 5:
                    res.fail(part, f"{name} is not in the log as leaf {proof['leaf']} "
                                   f"of the tree head of {size} (its inclusion proof fails): "
                                   "changed after it was logged"
                                   + (" (what it says, or its arrival received_us)"
                                      if kind == "event" else "") + ", or never logged")
        if bad > 5:
            res.fail(part, f"and {bad - 5} more {what}(s) fail their inclusion proofs")
        if not bad:
            old = len(items) - len(logged) - (len(linked) if section == "audit" else 0)
            res.notes.append(f"{len(logged)} {what}(s) proved in the log of {size} leaves"
                             + (f"; {old} predate the log" if old else "")
                             + (f"; {unbound} logged before leaves bound the arrival "
                                "(their received_us is not proved)" if unbound else ""))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Check a coverwatch evidence pack, without "
                                             "coverwatch.")
    ap.add_argument("pack", help="the evidence pack (.zip)")
    ap.add_argument("--public-key", help="trust only this Ed25519 public key (PEM or base64)")
    ap.add_argument("--heads", help="a witnessed copy of the site's tree heads (JSON lines)")
    ap.add_argument("--tsa-ca", help="the time-stamping authority's certificate (PEM): the "
                                     "head's RFC 3161 time-stamp must verify under it")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        with open(args.pack, "rb") as f:
            data = f.read()
        trusted = None
        if args.public_key:
            with open(args.public_key, encoding="ascii") as f:
                trusted = (read_public_key(f.read()),)
        tsa_ca = None
        if args.tsa_ca:
            with open(args.tsa_ca, "rb") as f:
                tsa_ca = f.read()
        witnessed = None
        if args.heads:
            with open(args.heads, "rb") as f:
                witnessed = [d for d in _lines(f.read()) if d.get("kind") == HEAD_KIND
                             and verify_document(d, trusted) is None]
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = check_pack(data, trusted, witnessed, tsa_ca)
    with open(__file__, "rb") as f:  # the pack's own copy is a convenience, not evidence
        _proofs.compare_copy(data, f.read(), res)
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
