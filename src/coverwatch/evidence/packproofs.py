"""Inclusion proofs for an evidence pack: its events and audit entries against a signed tree head.

At export the pack takes the site's last signed tree head if it covers the whole log,
else signs a new one (appended to the site's tree head file, chained to the last).
``tree-head.json`` carries that head, the head before it and an RFC 9162 consistency
proof between them; ``proofs.json`` carries, for every event and audit entry of the
pack, its leaf index and RFC 9162 inclusion proof against the head. The examiner
recomputes each leaf from the record itself (``docs/evidence-format.md``), so a record
changed after it was logged fails its proof even in a pack re-signed with the site's key.
Records stored before the log existed (schema 0013) have no leaf: they are listed as
``unlogged``, never given a proof they do not have.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from coverwatch.domain.merkle import Levels
from coverwatch.evidence.keys import SigningKey
from coverwatch.evidence.treeheads import head_digest, head_now, load_heads
from coverwatch.storage import Store
from coverwatch.storage.tables import tlog_leaves
from coverwatch.storage.tlog import leaf_hashes, log_size

__all__ = ["pack_head", "pack_proofs"]


def pack_head(
    store: Store, key: SigningKey, site: str, path: Path,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The signed head the pack is proved against, and the site's head before it (or None)."""
    docs, _ = load_heads(path)
    mine = [d for _, d in docs if d.get("site") == site]
    with store.reading() as conn:
        size = log_size(conn, store.site)
    if mine and int(mine[-1].get("size") or 0) == size:
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
    event_ids: Iterable[int], audit_ids: Iterable[int], purge_audit_ids: Iterable[int] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``tree-head.json`` and ``proofs.json`` for the given records (see the module doc);
    ``purge_audit_ids``: the ``retention.purged`` entries of ``purges.json``, proved under
    ``purges`` (they need not fall in the audit segment)."""
    size = int(head["size"])
    events, entries = [str(i) for i in event_ids], [str(i) for i in audit_ids]
    purged = [str(i) for i in purge_audit_ids]
    with store.reading() as conn:
        tree = Levels(leaf_hashes(conn, store.site, size))
        at = {"event": _leaf_index(conn, store.site, "event", events, size),
              "audit": _leaf_index(conn, store.site, "audit", entries + purged, size)}
    proofs: dict[str, Any] = {"tree_size": size, "root": head["root"]}
    unlogged: dict[str, list[int]] = {}
    for name, kind, refs in (("events", "event", events), ("audit", "audit", entries)):
        proofs[name] = {ref: {"leaf": at[kind][ref],
                              "path": [h.hex() for h in tree.inclusion_proof(at[kind][ref],
                                                                             size)]}
                        for ref in refs if ref in at[kind]}
        unlogged[name] = [int(ref) for ref in refs if ref not in at[kind]]
    proofs["unlogged"] = unlogged
    proofs["purges"] = {ref: {"leaf": at["audit"][ref], "path": [
        h.hex() for h in tree.inclusion_proof(at["audit"][ref], size)]}
        for ref in purged if ref in at["audit"]}
    consistency = None
    if prev is not None and int(prev["size"]) <= size:
        consistency = [h.hex() for h in tree.consistency_proof(int(prev["size"]), size)]
    return {"head": head, "previous": prev, "consistency": consistency}, proofs
