"""Leases expire on the server: a dead worker's keys vanish with nobody sweeping them.

The leases bucket has a TTL (twice the lease; an existing bucket without one is given
it). A worker that stops renewing (dead) loses its site and heartbeat keys to the
server's expiry, while a live worker's renewed keys stay. The next owner of the dead
worker's site, whose view still holds the vanished revision, creates the key afresh,
and its epoch is higher than the dead owner's: the fencing order is kept, and the dead
owner's renewal at its old revision fails.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from natskit import NATS_URL, cleanup, need_nats, unique_names

from coverwatch.bus import connect
from coverwatch.bus.leases import LeaseTable, LeaseView, lease_ttl, open_bucket

LEASE_S = 1.0


async def _gone(kv: KeyValue, key: str) -> bool:
    try:
        await kv.get(key)
    except KeyNotFoundError:
        return True
    return False


def test_a_dead_workers_keys_expire_on_the_server() -> None:
    need_nats()
    names = unique_names()

    async def body() -> None:
        nc = await connect(NATS_URL)
        js = nc.jetstream()
        await open_bucket(js, names.leases)  # made by an older version: no TTL
        kv = await open_bucket(js, names.leases, ttl_s=lease_ttl(LEASE_S))
        info = await js.stream_info(f"KV_{names.leases}")
        assert info.config.max_age == pytest.approx(2 * LEASE_S)
        view = LeaseView(kv, LEASE_S)
        await view.start()
        dead = LeaseTable(kv, view, "dead", lease_s=LEASE_S)
        live = LeaseTable(kv, view, "live", lease_s=LEASE_S)
        await dead.heartbeat(1)
        old = await dead.try_acquire("north")
        await live.heartbeat(1)
        assert old is not None and await live.try_acquire("south") is not None
        deadline = time.monotonic() + 30
        while not (await _gone(kv, "site.north") and await _gone(kv, "worker.dead")):
            assert time.monotonic() < deadline, "the dead worker's keys did not expire"
            assert await live.renew("south")  # only the dead one stops
            await live.heartbeat(1)
            await asyncio.sleep(0.3)
        assert not await _gone(kv, "site.south") and not await _gone(kv, "worker.live")
        assert view.sites["north"].revision == old  # no watcher hears of an expiry
        new = await live.try_acquire("north")
        assert new is not None and new > old
        assert not await dead.renew("north")
        await view.stop()
        await nc.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 60))
    finally:
        asyncio.run(cleanup(NATS_URL, names))
