"""Distributed mode, fenced writes: a stale owner's write fails inside PostgreSQL.

1. The fence itself: an owner's writes (``FENCE`` set to its site and epoch) pass
   while ``bus_fences`` holds its epoch, and fail with :class:`Fenced`, writing
   nothing, once a successor has claimed a newer one; a claim never lowers the
   fence; writes that are no owner's (ingest, people) are not fenced.
2. An owner that lost its site while paused (its successor claimed the fence; the
   owner has not noticed and still believes it holds the lease at its epoch) hands
   its sink a cover alert: nothing reaches PostgreSQL, neither the alert nor its
   audit entry; the same alert at the successor's epoch is stored.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from clusterkit import postgres_schema
from natskit import NATS_URL, cleanup, need_nats, unique_names, wait_for

from coverwatch.engine import CoverChange
from coverwatch.storage import open_store
from coverwatch.storage.busoutbox import FENCE, Fenced, check, claim
from serverkit import WallClock, base_settings, running_server, write_site


def test_a_stale_epoch_cannot_write(tmp_path: Path) -> None:
    with postgres_schema(tmp_path / "data") as db:
        store = open_store(db, tmp_path / "data", site="north", audit_key=False)
        try:
            store.fence_check = lambda conn: check(conn, "north")
            assert claim(store.engine, "north", 5, "w-old")
            token = FENCE.set(("north", 5))
            store.set_state("horizon", "1")
            store.append_audit("engine", "test.old-owner", "x", {})
            assert claim(store.engine, "north", 9, "w-new")  # the successor
            assert not claim(store.engine, "north", 7, "w-older")  # never lowered
            with pytest.raises(Fenced):
                store.set_state("horizon", "2")
            with pytest.raises(Fenced):
                store.append_audit("engine", "test.stale", "x", {})
            assert store.get_state("horizon") == "1"
            assert [e.action for e in store.audit_entries()] == ["test.old-owner"]
            FENCE.set(("north", 9))
            store.set_state("horizon", "3")
            FENCE.reset(token)  # nobody's epoch: ingest, people
            store.set_state("horizon", "4")
            assert store.get_state("horizon") == "4"
        finally:
            store.close()


def test_a_paused_owner_writes_nothing(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    site_path = write_site(tmp_path)
    data = tmp_path / "data"
    try:
        with postgres_schema(data) as db:
            settings = base_settings(site_path, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role="worker")
            with running_server(settings, WallClock()) as kit:
                cw = kit.svc.bus.worker
                site = kit.svc.site.id
                assert asyncio.run(wait_for(lambda: cw.owns(site), 30))
                epoch = cw.worker.leases.epochs[site]
                t0 = kit.clock() - 60_000_000
                change = CoverChange("alert", "gate", "cover", t0 + 10_000_000, t0, 0)
                portal = kit.client.portal
                assert portal is not None
                assert portal.call(cw._fence, site, epoch)  # held before the pause
                # While the owner was paused, a successor took the site and claimed the fence.
                assert claim(kit.svc.store.engine, kit.svc.store.site, epoch + 1000, "w-next")
                portal.call(cw._sink, site, epoch, 1, [change])
                assert kit.svc.store.load_alerts() == []
                assert not [e for e in kit.svc.store.audit_entries()
                            if e.action == "alert.raised"]
                # The successor's epoch writes.
                cw._fenced[site] = epoch + 1000
                cw.worker.leases.epochs[site] = epoch + 1000
                portal.call(cw._sink, site, epoch + 1000, 1, [change])
                assert [a["lapse_start"] for a in kit.svc.store.load_alerts()] == [t0]
    finally:
        asyncio.run(cleanup(NATS_URL, names))
