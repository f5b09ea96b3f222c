"""The bus against the real NATS JetStream: dedup, leases, checkpoints, dead-man check.

Each test has its own stream and buckets (a random prefix), deleted afterwards.
Without NATS at 127.0.0.1:4222 the tests skip; under CI=true they fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from natskit import NATS_URL, cleanup, need_nats, unique_names, wait_for

from coverwatch.bus import (
    BusNames,
    CheckpointConflict,
    Checkpoints,
    DeadmanCheck,
    EventLog,
    LeaseTable,
    LeaseView,
    balanced_moves,
    connect,
    open_bucket,
    watch_for_orphans,
)


def run(test: Callable[[BusNames], Awaitable[None]]) -> None:
    need_nats()
    names = unique_names()

    async def body() -> None:
        try:
            await asyncio.wait_for(test(names), 60)
        finally:
            await cleanup(NATS_URL, names)

    asyncio.run(body())


def test_a_resent_event_is_dropped_by_its_message_id() -> None:
    async def body(names: BusNames) -> None:
        nc = await connect(NATS_URL)
        log = EventLog(nc.jetstream(), names, duplicate_window_s=120)
        info = await log.ensure()
        assert info.config.duplicate_window == 120
        row: dict[str, Any] = {"kind": "fix", "t_us": 1, "officer": "A1", "x": 0.0, "y": 0.0}
        first = await log.publish("quay", [("k1", row), ("k2", row)])
        again = await log.publish("quay", [("k2", row), ("k3", row)])
        assert [p.duplicate for p in first] == [False, False]
        assert [p.duplicate for p in again] == [True, False]
        assert again[0].seq == first[1].seq  # the stored copy's sequence
        got: list[Any] = []

        async def collect(m: Any) -> None:
            got.append(m)

        sub = await log.follow("quay", 0, collect)
        assert await wait_for(lambda: len(got) >= 3, 10)
        await asyncio.sleep(0.3)  # nothing more arrives
        await sub.unsubscribe()
        assert [m.key for m in got] == ["k1", "k2", "k3"]
        assert [m.seq for m in got] == sorted(m.seq for m in got)
        assert got[0].data == row and got[0].kind == "event" and got[0].site == "quay"
        # A rule change is a control message, deduplicated by its id too.
        c1 = await log.publish_control("quay", "site:v2", {"site_source": "…"})
        c2 = await log.publish_control("quay", "site:v2", {"site_source": "…"})
        assert c1 == c2
        more: list[Any] = []

        async def collect_more(m: Any) -> None:
            more.append(m)

        sub = await log.follow("quay", got[-1].seq, collect_more)
        assert await wait_for(lambda: more, 10)
        await asyncio.sleep(0.3)
        await sub.unsubscribe()
        assert [(m.kind, m.seq, m.data) for m in more] == [
            ("control", c1, {"site_source": "…"})]
        # Another site's subject is not mixed in.
        await log.publish("other", [("k9", row)])
        assert await log.last_seq("quay") == c1
        await nc.close()

    run(body)


async def _leases(names: BusNames, worker: str, lease_s: float) -> tuple[Any, LeaseView,
                                                                         LeaseTable]:
    nc = await connect(NATS_URL)
    kv = await open_bucket(nc.jetstream(), names.leases)
    view = LeaseView(kv, lease_s)
    await view.start()
    return nc, view, LeaseTable(kv, view, worker, lease_s=lease_s)


def test_of_two_contenders_exactly_one_owns_a_site() -> None:
    async def body(names: BusNames) -> None:
        nc_a, view_a, a = await _leases(names, "a", 2.0)
        nc_b, view_b, b = await _leases(names, "b", 2.0)
        for site in ("s1", "s2", "s3"):
            got = await asyncio.gather(a.try_acquire(site), b.try_acquire(site))
            assert sum(e is not None for e in got) == 1, got
        owned_a = set(a.revisions)
        owned_b = set(b.revisions)
        assert owned_a | owned_b == {"s1", "s2", "s3"} and not owned_a & owned_b
        # The owner renews; the other cannot take a live lease.
        site = sorted(owned_a or owned_b)[0]
        holder, other = (a, b) if site in owned_a else (b, a)
        assert await holder.renew(site)
        assert await wait_for(lambda: view_a.owner(site) == view_b.owner(site), 5)
        assert await other.try_acquire(site) is None
        # The holder stops renewing: once stale, the other takes it with a newer epoch.
        old_epoch = holder.epochs[site]
        assert await wait_for(lambda: other.try_acquire(site), 10, step=0.3)
        assert other.epochs[site] > old_epoch
        assert not holder.owns(site)  # its own clock already told it to stop
        assert not await holder.renew(site)  # and the compare-and-set refuses it
        for v in (view_a, view_b):
            await v.stop()
        await nc_a.close()
        await nc_b.close()

    run(body)


def test_balanced_moves_even_the_load() -> None:
    async def body(names: BusNames) -> None:
        nc, view, a = await _leases(names, "a", 5.0)
        _, _, b = await _leases(names, "b", 5.0)
        sites = {f"s{i}" for i in range(10)}
        await a.heartbeat(0)
        take, give = balanced_moves("a", sites, view, [])
        assert len(take) == 10 and not give  # alone: everything
        for s in take:
            assert await a.try_acquire(s)
        await b.heartbeat(0)
        assert await wait_for(lambda: "b" in view.live_workers(), 5)
        take, give = balanced_moves("a", sites, view, list(a.revisions))
        assert not take and len(give) == 5
        for s in give:
            await a.release(s)
        assert await wait_for(lambda: all(view.owner(s) is None for s in give), 5)
        take_b, _ = balanced_moves("b", sites, view, [])
        assert sorted(take_b) == sorted(give)
        await view.stop()
        await nc.close()

    run(body)


def test_a_new_owner_fences_the_old_owners_checkpoints() -> None:
    async def body(names: BusNames) -> None:
        nc = await connect(NATS_URL)
        cps = Checkpoints(await open_bucket(nc.jetstream(), names.checkpoints))
        assert await cps.load("quay") is None
        first = await cps.claim("quay", "a", epoch=1)
        assert first.seq == 0 and first.state is None
        saved = await cps.save(first, 42, b"state at 42")
        second = await cps.claim("quay", "b", epoch=5)
        assert (second.seq, second.state, second.owner) == (42, b"state at 42", "b")
        with pytest.raises(CheckpointConflict):
            await cps.save(saved, 50, b"the old owner, too late")
        with pytest.raises(CheckpointConflict):
            await cps.claim("quay", "a", epoch=1)  # an older epoch never wins back
        await cps.save(second, 60, b"state at 60")
        loaded = await cps.load("quay")
        assert loaded is not None and (loaded.seq, loaded.state) == (60, b"state at 60")
        await nc.close()

    run(body)


def test_a_site_without_a_live_owner_is_reported_once() -> None:
    async def body(names: BusNames) -> None:
        nc, view, a = await _leases(names, "a", 1.0)
        reported: list[str] = []
        back: list[str] = []

        async def orphan(site: str, seconds: float) -> None:
            assert seconds > 1.0
            reported.append(site)

        async def owned(site: str) -> None:
            back.append(site)

        check = DeadmanCheck(view, lambda: ["held", "never"], 1.0, orphan, owned)
        assert await a.try_acquire("held")
        start = time.monotonic()
        while time.monotonic() - start < 1.5:  # "held" is renewed, "never" has no owner
            assert await a.renew("held")
            await check.check()
            await asyncio.sleep(0.2)
        assert reported == ["never"]
        # "held" is no longer renewed (its worker died): reported after lease + 1 s.
        assert await wait_for(check.check, 10)
        assert reported == ["never", "held"]
        for _ in range(3):
            await check.check()
        assert reported == ["never", "held"]  # once per outage
        _, _, b = await _leases(names, "b", 1.0)
        # A newcomer waits a whole lease from when it first saw the key, too.
        assert await wait_for(lambda: b.try_acquire("held"), 10, step=0.3)

        async def owner_seen() -> bool:
            # The view learns of the new lease from the bucket's watch, a moment later.
            await check.check()
            return bool(back)

        assert await wait_for(owner_seen, 10)
        assert back == ["held"]
        await view.stop()
        await nc.close()

    run(body)


def test_a_gateway_node_reports_a_site_whose_worker_died() -> None:
    async def body(names: BusNames) -> None:
        nc, view, a = await _leases(names, "a", 1.0)
        assert await a.try_acquire("quay")  # then never renewed: its worker "died"
        reported: list[tuple[str, float]] = []

        async def orphan(site: str, seconds: float) -> None:
            reported.append((site, seconds))

        stop = asyncio.Event()
        watch = asyncio.create_task(watch_for_orphans(
            nc.jetstream(), names.leases, lambda: ["quay"], lease_s=1.0, after_s=1.0,
            on_orphan=orphan, every_s=0.2, stop=stop))
        assert await wait_for(lambda: reported, 15)
        stop.set()
        await watch
        assert [site for site, _ in reported] == ["quay"] and reported[0][1] > 1.0
        await view.stop()
        await nc.close()

    run(body)
