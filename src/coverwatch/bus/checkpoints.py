"""Per-site engine checkpoints in the ``<prefix>-checkpoints`` KV bucket.

A checkpoint is the stream sequence a site's owner has consumed up to and the
evaluator's state at that point; a new owner restores the state and reads the
stream from the next sequence, not from the beginning.

Every write is a compare-and-set on the key's revision. A new owner first
*claims* the checkpoint (rewrites it with its own epoch), so a previous owner
that has not yet noticed it lost the lease can no longer write: its next save
fails on the revision, and it stops.

Value layout: one JSON header line (seq, owner, epoch, time, state length),
then the state bytes, zlib-compressed. The state must fit the server's
maximum message size (1 MB by default); a larger one belongs in PostgreSQL.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import orjson
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from coverwatch.errors import CoverwatchError

__all__ = ["Checkpoint", "CheckpointConflict", "Checkpoints"]

KEY = "site."


class CheckpointConflict(CoverwatchError):
    """Another owner has written the checkpoint: this one has lost the site."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A site's evaluation up to stream sequence ``seq`` (``state`` None: nothing yet)."""

    site: str
    seq: int
    state: bytes | None
    owner: str
    epoch: int
    revision: int  # the KV revision this was read or written at


def _encode(seq: int, state: bytes | None, owner: str, epoch: int) -> bytes:
    body = b"" if state is None else zlib.compress(state, 1)
    head = orjson.dumps({"seq": seq, "owner": owner, "epoch": epoch, "at": time.time(),
                         "state": None if state is None else len(body)})
    return head + b"\n" + body


def _decode(site: str, value: bytes, revision: int) -> Checkpoint:
    head, _, body = value.partition(b"\n")
    meta = orjson.loads(head)
    state = None if meta["state"] is None else zlib.decompress(body)
    return Checkpoint(site, int(meta["seq"]), state, str(meta["owner"]), int(meta["epoch"]),
                      revision)


class Checkpoints:
    """Load, claim and save a site's checkpoint, each a compare-and-set."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def load(self, site: str) -> Checkpoint | None:
        try:
            entry = await self.kv.get(KEY + site)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return _decode(site, entry.value, entry.revision or 0)

    async def claim(self, site: str, owner: str, epoch: int) -> Checkpoint:
        """Read the checkpoint and fence it with our epoch; the result is where to resume."""
        for _ in range(5):
            cp = await self.load(site)
            seq, state = (0, None) if cp is None else (cp.seq, cp.state)
            value = _encode(seq, state, owner, epoch)
            try:
                if cp is None:
                    rev = await self.kv.create(KEY + site, value)
                else:
                    if cp.epoch > epoch:
                        raise CheckpointConflict(f"{site}: a newer owner (epoch {cp.epoch})")
                    rev = await self.kv.update(KEY + site, value, last=cp.revision)
            except KeyWrongLastSequenceError:
                continue  # the previous owner saved meanwhile: read again
            return Checkpoint(site, seq, state, owner, epoch, rev)
        raise CheckpointConflict(f"{site}: the checkpoint keeps changing under the claim")

    async def save(self, previous: Checkpoint, seq: int, state: bytes | None) -> Checkpoint:
        """Write a newer checkpoint over ``previous``; CheckpointConflict if another wrote."""
        value = _encode(seq, state, previous.owner, previous.epoch)
        try:
            rev = await self.kv.update(KEY + previous.site, value, last=previous.revision)
        except KeyWrongLastSequenceError as e:
            raise CheckpointConflict(f"{previous.site}: checkpoint taken over") from e
        return Checkpoint(previous.site, seq, state, previous.owner, previous.epoch, rev)
