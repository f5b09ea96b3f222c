"""Inclusion proofs for an evidence pack: its records against a signed tree head.

At export the pack takes the site's last signed tree head if it covers the whole log of
the export's snapshot, else signs a new one of that log (appended to the site's tree head
file, chained to the last).
``tree-head.json`` carries that head, the head before it and an RFC 9162 consistency
proof between them; ``proofs.json`` carries, for every event and audit entry of the
pack, and for every alert, delivery and rule version it carries (``records``, by
position in their member), its leaf index and RFC 9162 inclusion proof against the
head. The examiner
recomputes each leaf from the record itself (``docs/evidence-format.md``), so a record
changed after it was logged fails its proof even in a pack re-signed with the site's key.
Records stored before their kind was logged have no leaf: they are listed as
``unlogged``, never given a proof they do not have. A record whose leaf is not its own
(changed in the database since) is given its reference's newest leaf, whose proof then
fails at the examiner, naming it. ``tree-head.json`` also carries the head's RFC 3161
time-stamp reply (``timestamp``, base64) when the authority gave one.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from coverwatch.domain.merkle import Levels
from coverwatch.errors import StoreError
from coverwatch.evidence.keys import SigningKey
from coverwatch.evidence.timestamps import tsr_file
from coverwatch.evidence.treeheads import head_digest, head_now, load_heads
from coverwatch.storage import Store
from coverwatch.storage.tables import tlog_leaves
from coverwatch.storage.tlog import leaf_bytes, leaf_hashes, log_size, record_digest

__all__ = ["HeadMoved", "RecordRefs", "pack_head", "pack_proofs", "pack_records"]

# Section of proofs.json -> (leaf kind, ref, the record as the pack carries it) per record.
RecordRefs = Mapping[str, Sequence[tuple[str, str, Any]]]


def pack_records(alerts: Sequence[Mapping[str, Any]], deliveries: Sequence[Mapping[str, Any]],
                 versions: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, str, Any]]]:
    """The pack's alerts, deliveries (less their formatted ``at``) and rule versions as
    :data:`RecordRefs`, in the order of their members."""
    return {
        "alerts": [("alert", str(a["id"]), dict(a)) for a in alerts],
        "deliveries": [("delivery", str(d["alert_id"]),
                        {k: v for k, v in d.items() if k != "at"}) for d in deliveries],
        "rule-versions": [("rule-version", str(v["effective_us"]), dict(v)) for v in versions],
    }


def _record_leaves(conn: Any, site: str, items: Sequence[tuple[str, str, Any]],
                   size: int) -> list[int | None]:
    """Each record's leaf index: its own leaf's, else its ref's newest (changed since), else
    None (never logged)."""
    by_leaf: dict[str, int] = {}
    by_ref: dict[tuple[str, str], int] = {}
    for kind in sorted({k for k, _, _ in items}):
        refs = sorted({r for k, r, _ in items if k == kind})
        for i in range(0, len(refs), 500):
            q = select(tlog_leaves.c.ref, tlog_leaves.c.idx, tlog_leaves.c.leaf).where(
                tlog_leaves.c.site == site, tlog_leaves.c.kind == kind,
                tlog_leaves.c.ref.in_(refs[i:i + 500]), tlog_leaves.c.idx < size)
            for ref, idx, leaf in conn.execute(q):
                by_leaf[str(leaf)] = max(int(idx), by_leaf.get(str(leaf), -1))
                by_ref[kind, str(ref)] = max(int(idx), by_ref.get((kind, str(ref)), -1))
    out: list[int | None] = []
    for kind, ref, record in items:
        leaf = leaf_bytes(kind, ref, {"hash": record_digest(record)}).decode()
        out.append(by_leaf.get(leaf, by_ref.get((kind, ref))))
    return out


def _timestamp(path: Path, head: Mapping[str, Any]) -> str | None:
    """The head's RFC 3161 reply (base64) kept beside ``path``, if any."""


    digest, tsr = head_digest(dict(head)), tsr_file(path)
    if not tsr.exists():
        return None
    for line in reversed(tsr.read_bytes().splitlines()):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("head") == digest:
            base64.b64decode(str(doc.get("tsr")), validate=True)
            return str(doc["tsr"])
    return None


class HeadMoved(StoreError, ValueError):
    """A head larger than the export's snapshot was signed meanwhile: export again (a
    ValueError too, so that callers reporting bad requests report it)."""


def pack_head(
    store: Store, key: SigningKey, site: str, path: Path,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The signed head the pack is proved against, and the site's head before it (or None).

    Called inside the export's snapshot: the head is of the snapshot's log, so its
    ``audit_last`` is the snapshot's last audit entry (the segment ends there, and every
    record that entry's predecessors speak of is in the pack). A head signed meanwhile
    over more leaves cannot be followed by a smaller one: :class:`HeadMoved`."""
    docs, _ = load_heads(path)
    mine = [d for _, d in docs if d.get("site") == site]
    with store.reading() as conn:
        size = log_size(conn, store.site)
    last = int(mine[-1].get("size") or 0) if mine else 0
    if last > size:
        raise HeadMoved(f"a tree head of {last} leaves was signed during the export "
                        f"(its snapshot holds {size}): export again")
    # A head without ``audit_last`` (version 1) cannot show the segment's end, nor one
    # without ``open_alerts`` and ``briefing`` (version 2) the alerts open before it and
    # the roster and orders: sign anew.
    if mine and last == size and "audit_last" in mine[-1] and "briefing" in mine[-1]:
        head, before = mine[-1], mine[:-1]
    else:
        head, before = head_now(store, key, site, path), mine
    prev = before[-1] if before and head.get("prev") == head_digest(before[-1]) else None
    return head, prev


def _leaf_index(conn: Any, site: str, kind: str, refs: list[str], size: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(refs), 500):
        q = select(tlog_leaves.c.ref, tlog_leaves.c.idx).where(
            tlog_leaves.c.site == site, tlog_leaves.c.kind == kind,
            tlog_leaves.c.ref.in_(refs[i:i + 500]), tlog_leaves.c.idx < size)
        found.update({str(ref): int(idx) for ref, idx in conn.execute(q)})
    return found


def pack_proofs(
    store: Store, head: dict[str, Any], prev: dict[str, Any] | None,
    event_ids: Iterable[int], audit_ids: Iterable[int], records: RecordRefs | None = None,
    heads_path: Path | None = None, purge_audit_ids: Iterable[int] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``tree-head.json`` and ``proofs.json`` for the given records (see the module doc);
    ``records``: see :func:`pack_records`; ``heads_path``: the head file, whose time-stamp
    replies are looked up; ``purge_audit_ids``: the ``retention.purged`` entries of
    ``purges.json``, proved under ``purges`` (they need not fall in the audit segment)."""
    size = int(head["size"])
    events, entries = [str(i) for i in event_ids], [str(i) for i in audit_ids]
    purged = [str(i) for i in purge_audit_ids]
    with store.reading() as conn:
        tree = Levels(leaf_hashes(conn, store.site, size))
        at = {"event": _leaf_index(conn, store.site, "event", events, size),
              "audit": _leaf_index(conn, store.site, "audit", entries + purged, size)}
        found = {name: _record_leaves(conn, store.site, items, size)
                 for name, items in (records or {}).items()}
    proofs: dict[str, Any] = {"tree_size": size, "root": head["root"]}
    unlogged: dict[str, list[int]] = {}
    for name, kind, refs in (("events", "event", events), ("audit", "audit", entries)):
        proofs[name] = {ref: {"leaf": at[kind][ref],
                              "path": [h.hex() for h in tree.inclusion_proof(at[kind][ref],
                                                                             size)]}
                        for ref in refs if ref in at[kind]}
        unlogged[name] = [int(ref) for ref in refs if ref not in at[kind]]
    for name, at_leaf in found.items():
        proofs[name] = {str(n): {"leaf": i, "path": [h.hex() for h in
                                                     tree.inclusion_proof(i, size)]}
                        for n, i in enumerate(at_leaf) if i is not None}
        unlogged[name] = [n for n, i in enumerate(at_leaf) if i is None]
    proofs["unlogged"] = unlogged
    proofs["purges"] = {ref: {"leaf": at["audit"][ref], "path": [
        h.hex() for h in tree.inclusion_proof(at["audit"][ref], size)]}
        for ref in purged if ref in at["audit"]}
    consistency = None
    if prev is not None and int(prev["size"]) <= size:
        consistency = [h.hex() for h in tree.consistency_proof(int(prev["size"]), size)]
    out: dict[str, Any] = {"head": head, "previous": prev, "consistency": consistency}
    stamp = None if heads_path is None else _timestamp(heads_path, head)
    if stamp is not None:
        out["timestamp"] = stamp
    return out, proofs
