"""The server's side of evidence: anchoring the audit chain and signing the log's tree
head at an interval and on demand, giving each head to its witnesses
(:mod:`coverwatch.evidence.witness`), and checking the chain for the audit page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coverwatch.evidence.anchors import append_anchor, make_anchor, send_anchor, verify_anchored
from coverwatch.evidence.keys import SigningKey, load_signing_key
from coverwatch.evidence.witness import Witnesses
from coverwatch.storage.auditkeys import default_key_path

if TYPE_CHECKING:
    from coverwatch.settings import Settings
    from coverwatch.storage import Store

__all__ = ["Anchoring", "anchor_file", "anchor_now", "run_anchoring", "run_anchorings",
           "signing_key", "tree_heads_file", "verify_now", "witnesses_for"]

log = logging.getLogger("coverwatch.evidence")
_LAST = "audit.last_anchor"


def _key_path(store: Store, settings: Settings) -> Path:
    ring = store.audit_keyring
    return ring.path if ring is not None else default_key_path(settings.data_dir)


def signing_key(store: Store, settings: Settings) -> SigningKey:
    """The key the site's store signs with (its keyring's, else the data directory's)."""
    return load_signing_key(_key_path(store, settings))


def anchor_file(store: Store, settings: Settings) -> Path:
    """Where the anchors are appended (``settings.anchor_file``, else beside the key)."""
    return settings.anchor_file or _key_path(store, settings).with_name("anchors.jsonl")


def tree_heads_file(store: Store, settings: Settings) -> Path:
    """The site's signed tree heads: ``tree-heads.jsonl`` beside the anchor file."""
    return anchor_file(store, settings).with_name("tree-heads.jsonl")


def witnesses_for(store: Store, settings: Settings) -> Witnesses:
    """The witnesses ``settings`` name for the heads of ``store``'s site."""
    return Witnesses(settings.witnesses, settings.tsa_url, tree_heads_file(store, settings))


def anchor_now(store: Store, settings: Settings, site: str, chain: Store | None = None,
               name: str | None = None, witnesses: Witnesses | None = None) -> dict[str, Any]:
    """Sign the current head, append it to the anchor file, send it on (blocking).

    ``chain``/``name``: another chain than the site's (the deployment's, named
    ``_deployment``), anchored with the same key, file and destination. The log's
    signed tree head goes to ``witnesses`` (failures stay queued there, never raised).
    Neither is made over audit entries whose MAC fails (``UnsealedAudit``)."""
    import orjson

    from coverwatch.evidence.treeheads import head_now, refuse_unsealed

    key, path = signing_key(store, settings), anchor_file(store, settings)
    store = store if chain is None else chain
    site = site if name is None else name
    refuse_unsealed(store, path.with_name("tree-heads.jsonl"), site)  # nor anchored
    anchor = make_anchor(store, key, site)
    append_anchor(path, anchor)
    store.set_state(_LAST, orjson.dumps(anchor).decode())
    # The transparency log's signed tree head, beside the anchors.
    head = head_now(store, key, site, path.with_name("tree-heads.jsonl"))
    if witnesses is not None:
        witnesses.witness(head)
    if settings.anchor_url:
        send_anchor(settings.anchor_url, anchor)
    return anchor


def verify_now(store: Store, settings: Settings, site: str,
               witnesses: Witnesses | None = None) -> dict[str, Any]:
    """The chain, its MACs and the server's anchor file, as JSON for the audit page (with
    the state of each witness of the heads)."""
    path = anchor_file(store, settings)
    key = signing_key(store, settings)
    result = verify_anchored(store, path if path.exists() else None,
                             keyring=store.audit_keyring, trusted=key.trusted,
                             site=site)
    out = result.as_dict()
    heads = tree_heads_file(store, settings)
    if heads.exists():
        from coverwatch.evidence.treeheads import verify_tree_heads

        checked = verify_tree_heads(store, heads, trusted=key.trusted, site=site)
        out["tree_heads"] = {"heads": checked.heads, "leaves": checked.leaves,
                             "findings": [{"kind": f.kind, "message": f.message}
                                          for f in checked.findings]}
        out["findings"] += out["tree_heads"]["findings"]
        out["ok"] = out["ok"] and not checked.findings
        out["sound"] = out["sound"] and not checked.findings and checked.heads > 0
        if checked.heads == 0 and out["refusal"] is None:
            out["refusal"] = f"no tree heads of site {site!r} in {heads}"
    elif out["sound"]:  # never sound unless the log was checked against a signed head
        out["sound"], out["refusal"] = False, f"no tree head file at {heads}"
    if witnesses is not None:
        out["witnesses"] = witnesses.as_dict()
    return out


@dataclass
class Anchoring:
    """One chain to anchor (the arguments of :func:`anchor_now`), and when next."""

    store: Store
    settings: Settings
    site: str
    chain: Store | None = None
    name: str | None = None
    witnesses: Witnesses | None = None
    on_refused: Callable[[str], Awaitable[None]] | None = None
    next_at: float = 0.0


async def run_anchoring(store: Store, settings: Settings, site: str,
                        chain: Store | None = None, name: str | None = None,
                        witnesses: Witnesses | None = None,
                        on_refused: Callable[[str], Awaitable[None]] | None = None) -> None:
    """Background task: anchor whenever the head moved, every ``anchor_every_s``
    (the site's chain, or ``chain`` named ``name``: see :func:`anchor_now`); heads a
    witness did not take are given again every ``witness_retry_s`` meanwhile. A head
    refused over audit entries whose MAC fails is given to ``on_refused`` (the server
    raises a system alert), and tried again at the next interval."""
    await run_anchorings([Anchoring(store, settings, site, chain, name, witnesses,
                                    on_refused)])


async def run_anchorings(jobs: Sequence[Anchoring]) -> None:
    """:func:`run_anchoring` for many chains (a node's sites) in one task, one chain at a
    time: a thousand sites' anchorings (a start anchors every one) neither flood the
    thread pool nor come due all at once, each at its own ``anchor_every_s``."""
    import time

    while True:
        for job in jobs:
            if time.monotonic() >= job.next_at:
                job.next_at = time.monotonic() + job.settings.anchor_every_s
                await _anchor_if_moved(job)
            elif job.witnesses is not None and job.witnesses.pending():
                await asyncio.to_thread(job.witnesses.flush)
        await asyncio.sleep(min(_pause(j.next_at, j.settings, j.witnesses) for j in jobs))


async def _anchor_if_moved(job: Anchoring) -> None:
    import orjson

    from coverwatch.evidence.treeheads import UnsealedAudit

    witnesses = job.witnesses
    store = job.store if job.chain is None else job.chain
    try:
        last = await asyncio.to_thread(store.get_state, _LAST)
        from coverwatch.storage import audit_head

        head = await asyncio.to_thread(audit_head, store)
        last_id = None if last is None else orjson.loads(last).get("head_id")
        from coverwatch.evidence.treeheads import log_moved

        moved = await asyncio.to_thread(log_moved, store)  # events move the log too
        if (head is not None and head.id != last_id) or moved:
            await asyncio.to_thread(anchor_now, job.store, job.settings, job.site, job.chain,
                                    job.name, witnesses)
        elif witnesses is not None and witnesses.pending():
            await asyncio.to_thread(witnesses.flush)
    except UnsealedAudit as e:
        log.error("audit anchoring refused: %s", e)
        if job.on_refused is not None:
            await job.on_refused(f"The audit log holds entries whose MAC does not verify; "
                                 f"{e}.")
    except Exception:  # anchoring must never stop the server
        log.exception("audit anchoring failed")


def _pause(next_at: float, settings: Settings, witnesses: Witnesses | None) -> float:
    """Until the next anchor, or the next retry if a witness still waits for heads."""
    import time

    left = max(0.0, next_at - time.monotonic())
    if witnesses is not None and witnesses.pending():
        left = min(left, settings.witness_retry_s)
    return max(left, 0.01)
