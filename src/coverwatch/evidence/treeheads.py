"""Signed tree heads of the site's transparency log, and checking the log against them.

A signed tree head is one JSON line: ``{"kind": "coverwatch.tree-head", "v": 3,
"site", "at", "size", "root", "prev", "prev_size", "audit_last", "open_alerts", "briefing"}``
with
``public_key``, ``key_id`` and an Ed25519 ``signature`` over the rest (canonical JSON, as
anchors). ``root`` is the RFC 9162 tree head (hex) of the first ``size`` leaves; ``prev`` is the
SHA-256 (hex) of the previous head of the site, as written (null for the first),
so heads form a chain: deleting or replaying one breaks it. ``audit_last`` (from v 2) is
``{"id", "hash"}`` of the last audit entry among those leaves (null: none): a pack's audit
segment that ends there is shown not cut short (version 1 heads lack it). ``open_alerts``
(from v 3) is the SHA-256 (hex) of the canonical JSON of the list of the alerts open or
acknowledged among those leaves, as records sorted by id
(:func:`coverwatch.storage.tlog.open_alerts`): a pack carries that list, so an alert raised
before its audit segment and never changed since cannot be dropped from it unseen.
``briefing`` (from v 3) is the digest of every shift, orders version and acknowledgement
(:mod:`coverwatch.evidence.briefing`), which a pack carries whole.

:func:`verify_tree_heads` needs only public keys and the stored leaves: each leaf
hash is recomputed, each head's root recomputed from the leaves, and each pair of
successive heads checked with an RFC 9162 consistency proof (the log between them
was only appended to). Findings: ``bad-head`` (signature), ``head-missing`` (the
chain of heads is broken: a head was deleted or one replayed out of order),
``replayed`` (a head smaller than the one before), ``inconsistent`` (two heads are
not of one append-only log), ``log-rewritten`` (the stored leaves no longer give a
head's root), ``log-truncated`` (fewer leaves than a head counted), ``leaf-edited``
(a leaf's stored hash is not the hash of its bytes), ``audit-mismatch`` (an audit
leaf names a hash the audit entry no longer has), ``record-mismatch`` (an alert, delivery or
rule version as stored now is not the one its leaves recorded).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from coverwatch.domain.merkle import Levels, leaf_hash, root, verify_consistency
from coverwatch.errors import StoreError
from coverwatch.evidence.anchors import (
    Finding,
    append_signed,
    load_signed,
    sign_document,
    verify_document,
)
from coverwatch.evidence.anchors import canonical as _canonical
from coverwatch.evidence.briefing import briefing_records
from coverwatch.evidence.keys import SigningKey
from coverwatch.storage import Store
from coverwatch.storage.tables import audit, tlog_leaves
from coverwatch.storage.tlog import leaf_hashes, open_alerts, record_digest

__all__ = ["HEAD_KIND", "HeadCheck", "UnsealedAudit", "append_head", "head_digest", "head_now",
           "heads_file", "last_head", "load_heads", "log_moved", "make_head", "refuse_unsealed",
           "unsealed_entries", "verify_tree_heads"]

HEAD_KIND = "coverwatch.tree-head"
LAST_HEAD_STATE = "tlog.last_head"


def head_digest(head: dict[str, Any]) -> str:
    """SHA-256 hex of a signed head's canonical JSON: what the next head names as ``prev``."""
    return hashlib.sha256(_canonical(head)).hexdigest()


def load_heads(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[Finding]]:
    """Every tree head line of ``path`` with its line number, and lines that are not heads."""
    return load_signed(path, HEAD_KIND, "bad-head", "a tree head")


def make_head(store: Store, key: SigningKey, site: str,
              prev: dict[str, Any] | None) -> dict[str, Any]:
    """A signed head of the log as stored now, chained to ``prev`` (the site's last head)."""
    with store.snapshot(), store.reading() as conn:  # the alerts of the same leaves
        hashes = leaf_hashes(conn, store.site)
        last = conn.execute(select(tlog_leaves.c.ref, tlog_leaves.c.leaf).where(
            tlog_leaves.c.site == store.site, tlog_leaves.c.kind == "audit",
            tlog_leaves.c.idx < len(hashes)).order_by(tlog_leaves.c.idx.desc()).limit(1)).first()
        live = open_alerts(store.load_unclosed_alerts())
        briefing = briefing_records(store)
    at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return sign_document({
        "kind": HEAD_KIND, "v": 3, "site": site, "at": at, "size": len(hashes),
        "root": root(hashes).hex(),
        "prev": None if prev is None else head_digest(prev),
        "prev_size": None if prev is None else prev.get("size"),
        "audit_last": None if last is None else {
            "id": int(last.ref), "hash": str(orjson.loads(str(last.leaf))["hash"])},
        "open_alerts": record_digest(live),
        "briefing": record_digest(briefing),
    }, key)


append_head = append_signed  # one appender for anchors and heads: line, 0600, fsync


def last_head(path: Path, site: str) -> dict[str, Any] | None:
    heads, _ = load_heads(path)
    mine = [d for _, d in heads if d.get("site") == site]
    return mine[-1] if mine else None


def heads_file(key_path: Path) -> Path:
    """The site's tree head file: ``tree-heads.jsonl`` beside the audit key."""
    return key_path.with_name("tree-heads.jsonl")


class UnsealedAudit(StoreError):
    """The next head would cover audit entries whose MAC does not verify: none is signed."""


def unsealed_entries(store: Store, from_leaf: int, *, strict: bool = True) -> list[str]:
    """Why each audit entry logged at leaf ``from_leaf`` or later fails its MAC (empty
    without a keyring); ``strict=False`` lets entries with no MAC at all pass (the first
    head of a log whose older entries predate the key)."""
    ring = store.audit_keyring
    if ring is None:
        return []
    with store.reading() as conn:
        ids = sorted(int(r) for (r,) in conn.execute(select(tlog_leaves.c.ref).where(
            tlog_leaves.c.site == store.site, tlog_leaves.c.kind == "audit",
            tlog_leaves.c.idx >= from_leaf)))
        rows = [row for i in range(0, len(ids), 500) for row in conn.execute(
            select(audit.c.id, audit.c.hash, audit.c.mac).where(
                audit.c.site == store.site, audit.c.id.in_(ids[i:i + 500])))]
    return [f"audit entry {r.id} {why}" for r in sorted(rows, key=lambda r: int(r.id))
            if (why := ring.check(str(r.hash), r.mac)) is not None and (strict or r.mac)]


def refuse_unsealed(store: Store, path: Path, site: str) -> dict[str, Any] | None:
    """Raise :class:`UnsealedAudit` if an audit entry logged since the site's last head in
    ``path`` fails its MAC; else return that head (None: the first)."""
    prev = last_head(path, site)
    bad = unsealed_entries(store, 0 if prev is None else int(prev.get("size") or 0),
                           strict=prev is not None)
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UnsealedAudit(f"no tree head signed: {'; '.join(bad[:5])}{more} (written "
                            "without the audit key: forged or rewritten)")
    return prev


def head_now(store: Store, key: SigningKey, site: str, path: Path) -> dict[str, Any]:
    """Sign the log's head now, append it to ``path`` and remember it as the last head.

    The audit entries the head newly covers must carry valid MACs: a forged or rewritten
    entry is never signed into a head (:class:`UnsealedAudit` names them)."""
    prev = refuse_unsealed(store, path, site)
    head = make_head(store, key, site, prev)
    append_head(path, head)
    store.set_state(LAST_HEAD_STATE, _canonical(head).decode())
    return head


def log_moved(store: Store) -> bool:
    """Whether the log has leaves its last signed head does not cover."""
    from coverwatch.storage.tlog import log_size

    last = store.get_state(LAST_HEAD_STATE)
    with store.reading() as conn:
        size = log_size(conn, store.site)
    return size > (0 if last is None else int(orjson.loads(last).get("size") or 0))


@dataclass(slots=True)
class HeadCheck:
    """What :func:`verify_tree_heads` found."""

    heads: int
    leaves: int
    findings: list[Finding] = field(default_factory=list)
    last_head: dict[str, Any] | None = None
    checked: list[dict[str, Any]] = field(default_factory=list)  # the site's heads, in order
    other_sites: dict[str, int] = field(default_factory=dict)  # heads not checked, by site


def _check_leaves(store: Store) -> tuple[list[bytes], list[Finding]]:
    """Recompute every leaf hash from its bytes; compare audit leaves with the audit table."""
    findings: list[Finding] = []
    hashes: list[bytes] = []
    mismatched: list[str] = []
    with store.reading() as conn:
        rows = conn.execute(select(tlog_leaves).where(tlog_leaves.c.site == store.site)
                            .order_by(tlog_leaves.c.idx)).all()
        audit_hash = {str(r.id): str(r.hash) for r in conn.execute(
            select(audit.c.id, audit.c.hash).where(audit.c.site == store.site))}
    for expected, row in enumerate(rows):
        if int(row.idx) != expected:
            findings.append(Finding("log-truncated", f"leaf {expected} is missing"))
            break
        data = str(row.leaf).encode()
        if leaf_hash(data).hex() != row.hash:
            findings.append(Finding("leaf-edited", f"leaf {row.idx} ({row.kind} {row.ref}) "
                                                   "does not match its hash"))
        if row.kind == "audit" and audit_hash.get(str(row.ref)) != orjson.loads(data).get("hash"):
            mismatched.append(str(row.ref))
        hashes.append(leaf_hash(data))
    if mismatched:  # one finding, not one per entry (a wiped log has thousands)
        more = f" and {len(mismatched) - 1} more" if len(mismatched) > 1 else ""
        findings.append(Finding("audit-mismatch", f"the log recorded audit entry "
                                f"{mismatched[0]}{more}, changed or removed since"))
    return hashes, findings + _check_records(store, rows)


def _check_records(store: Store, rows: Sequence[Any]) -> list[Finding]:
    """Alerts, deliveries and rule versions as stored now against their leaves: an alert's
    record must be its newest leaf's, each delivery and rule version one of its ref's
    leaves. Records of a ref with no leaf predate their kind's logging and are passed."""
    from coverwatch.storage.versions import load_versions

    logged: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row.kind in ("alert", "delivery", "rule-version"):
            logged.setdefault((row.kind, str(row.ref)), []).append(
                str(orjson.loads(str(row.leaf)).get("hash")))
    alerts = {str(r["id"]): record_digest(r) for r in store.load_alerts()}
    changed = [f"alert {i}" for i, h in alerts.items()
               if ("alert", i) in logged and logged["alert", i][-1] != h]
    for d in store.load_deliveries():
        leaves = logged.get(("delivery", d.alert_id))
        if leaves is not None and record_digest(d.to_json()) not in leaves:
            changed.append(f"a delivery about alert {d.alert_id}")
    if any(kind == "rule-version" for kind, _ in logged):
        for v in load_versions(store):
            r = {"effective_us": v.effective_us, "source": v.source}
            if record_digest(r) not in logged.get(("rule-version", str(v.effective_us)), []):
                changed.append(f"the rule version from {v.effective_us}")
    if not changed:
        return []
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return [Finding("record-mismatch", f"{changed[0]}{more} is not as the log recorded it: "
                                       "changed in the database since")]


def verify_tree_heads(
    store: Store, path: Path, *, trusted: tuple[str, ...] | None, site: str,
) -> HeadCheck:
    """Check the stored log against every signed head of ``site`` in ``path``."""
    docs, findings = load_heads(path)
    heads: list[tuple[int, dict[str, Any]]] = []
    others: dict[str, int] = {}
    for n, doc in docs:
        why = verify_document(doc, trusted)
        if why is not None:
            findings.append(Finding("bad-head", f"tree head on line {n}: {why}"))
        elif doc.get("site") == site:
            heads.append((n, doc))
        else:
            others[str(doc.get("site"))] = others.get(str(doc.get("site")), 0) + 1
    hashes, leaf_findings = _check_leaves(store)
    findings += leaf_findings
    tree = Levels(hashes)  # each head's root and each proof in O(log n), not O(n)
    prev: tuple[int, dict[str, Any]] | None = None
    for n, doc in heads:
        size, where = int(doc["size"]), f"tree head on line {n} ({doc.get('at')})"
        if prev is None and doc.get("prev") is not None:
            findings.append(Finding("head-missing", f"{where} names a previous head that is "
                                                    "not in the file: heads were removed"))
        if prev is not None:
            pn, pdoc = prev
            if doc.get("prev") != head_digest(pdoc):
                findings.append(Finding("head-missing", f"{where} does not follow the head on "
                                        f"line {pn}: a head between them was deleted, or one "
                                        "was replayed"))
            if size < int(pdoc["size"]):
                findings.append(Finding("replayed", f"{where} has {size} leaves, fewer than "
                                        f"the head on line {pn} ({pdoc['size']})"))
            elif size <= len(hashes):
                proof = tree.consistency_proof(int(pdoc["size"]), size)
                if not verify_consistency(int(pdoc["size"]), size, bytes.fromhex(pdoc["root"]),
                                          bytes.fromhex(doc["root"]), proof):
                    findings.append(Finding("inconsistent", f"{where} and the head on line "
                                            f"{pn} are not of one append-only log"))
        if size > len(hashes):
            findings.append(Finding("log-truncated", f"the log has {len(hashes)} leaves but "
                                    f"{where} counted {size}: leaves were removed"))
        elif tree.root(size).hex() != doc.get("root"):
            findings.append(Finding("log-rewritten", f"the first {size} leaves no longer give "
                                    f"the root of {where}: the log was rewritten"))
        prev = (n, doc)
    last = store.get_state(LAST_HEAD_STATE)
    if last is not None and heads and head_digest(orjson.loads(last)) not in {
        head_digest(d) for _, d in heads
    }:
        findings.append(Finding("head-missing", "the server's last head is not in "
                                f"{path}: the file lost its newest heads or was replayed"))
    return HeadCheck(len(heads), len(hashes), findings, heads[-1][1] if heads else None,
                     [d for _, d in heads], others)
