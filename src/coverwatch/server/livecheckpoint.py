"""The live engine's checkpoint: a restart resumes from it instead of replaying history.

Every :data:`SAVE_EVERY_US` of event time (five minutes) the ticker saves the whole
:class:`~coverwatch.server.live.LiveCover` (engine at its horizon, events queued
beyond it, the latest positions, late arrivals) with the id of the newest stored
event it has taken and the site version in force, pickled and signed with a key
derived from the deployment's audit key (a checkpoint is only unpickled if this
deployment wrote it). On start, :func:`resume` loads it and the server adds only
the stored events after that id, so start-up no longer grows with history.

A checkpoint keeps the closed lapses and timeline points of the last
:data:`KEEP_US` of event time (the longest window the dashboard's timeline asks
for) so that it does not grow with history either; older ones are in the store
and in reports. Without an audit key (or ``COVERWATCH_BUS_SECRET``) there is no
checkpoint and start-up replays every stored event as before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import pickle
from dataclasses import dataclass

from coverwatch.server.buscover import pickle_state
from coverwatch.server.live import LiveCover
from coverwatch.storage import Store
from coverwatch.storage.startreads import SiteStart
from coverwatch.storage.versions import SiteVersion

__all__ = ["CHECKPOINT_KEY", "KEEP_US", "SAVE_EVERY_US", "LiveCheckpoint", "resume", "save",
           "secret_for"]

log = logging.getLogger("coverwatch.server")

CHECKPOINT_KEY = "live.checkpoint"
SAVE_EVERY_US = 300 * 1_000_000  # a restart adds at most this much event time
KEEP_US = 168 * 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class LiveCheckpoint:
    """A resumed live state and the number of site versions it was taken under."""

    live: LiveCover
    versions: int


def secret_for(store: Store) -> bytes | None:
    """The key that signs live checkpoints, or None (then none are written or read)."""
    env = os.environ.get("COVERWATCH_BUS_SECRET")
    if env:
        return hmac.new(hashlib.sha256(env.encode()).digest(), b"live", hashlib.sha256).digest()
    ring = store.audit_keyring
    if ring is None or not ring.keys:
        return None
    _, key = ring.keys[-1]  # the oldest: rotating the audit key must not orphan it
    return hmac.new(key, b"coverwatch live checkpoints", hashlib.sha256).digest()


def _trim(live: LiveCover) -> None:
    engine = live._engine
    if engine is None:
        return
    cutoff = engine.horizon - KEEP_US
    engine.lapses = [lp for lp in engine.lapses if lp.end is None or lp.end >= cutoff]
    for st in engine._stats:
        tl = st.timeline
        if len(tl) > 1 and tl[1].t < cutoff:
            # Keep the point in force at the cutoff and every one after it.
            k = next((i for i in range(1, len(tl)) if tl[i].t >= cutoff), len(tl)) - 1
            del tl[:k]


def save(store: Store, live: LiveCover, versions: list[SiteVersion]) -> bool:
    """Save ``live`` as the checkpoint (call it where no event is being added)."""
    secret = secret_for(store)
    if secret is None or not versions:
        return False
    _trim(live)
    sha = hashlib.sha256(versions[-1].source.encode()).hexdigest()
    body = pickle_state((live, len(versions), sha))
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    store.set_state(CHECKPOINT_KEY, base64.b64encode(mac + body).decode("ascii"))
    return True


def resume(store: Store, versions: list[SiteVersion],
           reads: SiteStart | None = None) -> LiveCheckpoint | None:
    """The saved live state if it is this deployment's and was taken under the newest of
    ``versions``; None otherwise (then start-up replays the stored events). ``reads``: the
    rows a start read for many sites at once (storage/startreads.py)."""
    secret = secret_for(store)
    text = (store if reads is None else reads).get_state(CHECKPOINT_KEY)
    if secret is None or not text or not versions:  # never saved, or cleared
        return None
    raw = base64.b64decode(text)
    mac, body = raw[:32], raw[32:]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        log.warning("the live checkpoint is not signed by this deployment: ignored")
        return None
    try:
        live, n_versions, sha = pickle.loads(body)  # authenticated above
    except Exception:  # an older layout: replay instead
        return None
    newest = hashlib.sha256(versions[-1].source.encode()).hexdigest()
    if not isinstance(live, LiveCover) or n_versions != len(versions) or sha != newest:
        return None
    return LiveCheckpoint(live, int(n_versions))
