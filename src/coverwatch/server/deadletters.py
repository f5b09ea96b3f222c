"""Setting a message aside as a dead letter (see :mod:`coverwatch.storage.deadletters`).

Used by the MQTT consumers: a message that is invalid, or whose records the
store refuses on their own, is kept as a dead letter and then acknowledged, so
it never blocks the topic or comes back after a restart. If even the dead
letter cannot be written the store is in trouble: the error propagates and the
message stays unacknowledged (the broker redelivers it later).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from coverwatch.server.pools import in_store

if TYPE_CHECKING:
    from coverwatch.server.unit import SiteUnit

__all__ = ["set_aside"]

log = logging.getLogger("coverwatch.server.ingest")


async def set_aside(svc: SiteUnit, source: str, topic: str | None, payload: bytes,
                    reason: str) -> int:
    """Keep ``payload`` as a dead letter of ``svc``'s site; returns its id."""
    letter = await in_store(svc.store.add_dead_letter, source, topic, payload, reason)
    svc.dead_letters += 1
    log.warning("%s message on %s set aside as dead letter %d: %s", source, topic, letter,
                reason[:300])
    return letter
