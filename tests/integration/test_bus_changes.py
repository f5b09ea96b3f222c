"""Distributed mode's change notification: a node refreshes the sites whose alerts or rule
versions were written, and not every site every round.

The feed: a trigger NOTIFYs each such write at its commit, and a ``ChangeFeed`` LISTENing
hears the sites of its own schema (not another schema's, not other state's writes).
The scan behind it: one query names the written sites.

On a PostgreSQL schema of its own: writes to one site's alerts and versions show in the
scan with a signature that changes with every further write (a late commit of an older
timestamp included), and not at all for a site nobody wrote to or before ``since``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from clusterkit import postgres_schema
from natskit import NATS_URL, cleanup, need_nats, unique_names, wait_for
from sqlalchemy import create_engine

from coverwatch.domain.alerts import Alert, alert_id_for
from coverwatch.server.changefeed import ChangeFeed
from coverwatch.server.cluster import changed_sites
from coverwatch.storage import open_store
from coverwatch.storage.versions import VERSIONS_KEY
from serverkit import WallClock, base_settings, running_server, write_site

ALERT = ("INSERT INTO alerts (site, id, kind, post, rule, lapse_start_us, alert_at_us, state, "
         "record, updated_us) VALUES (%(site)s, %(id)s, 'lapse', 'gate', 'cover', %(t)s, 1, "
         "'open', '{}', %(t)s)")


def test_the_scan_names_written_sites_and_their_writes_change_its_signature(
        tmp_path: Path) -> None:
    with postgres_schema(tmp_path / "data") as db:
        engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            assert changed_sites(engine, 0) == {}
            with engine.begin() as conn:
                conn.exec_driver_sql(ALERT, {"site": "north", "id": "a1", "t": 1_000})
            first = changed_sites(engine, 0)
            assert set(first) == {"north"}
            assert changed_sites(engine, 0) == first  # nothing new: not refreshed again
            # A commit landing late with an older time still changes the signature.
            with engine.begin() as conn:
                conn.exec_driver_sql(ALERT, {"site": "north", "id": "a2", "t": 900})
            second = changed_sites(engine, 0)
            assert second["north"] != first["north"]
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO server_state (site, key, value, updated_us) "
                    "VALUES ('east', %(k)s, '[]', 2000)", {"k": VERSIONS_KEY})
                conn.exec_driver_sql(
                    "INSERT INTO server_state (site, key, value, updated_us) "
                    "VALUES ('west', 'watchdog.probe', '1', 3000)")
            assert set(changed_sites(engine, 0)) == {"north", "east"}  # not a probe
            assert set(changed_sites(engine, 1_000)) == {"east"}  # since: later writes
        finally:
            engine.dispose()


def _engine(db: str):  # type: ignore[no-untyped-def]
    return create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))


def test_the_feed_hears_its_own_schemas_alert_and_rule_writes(tmp_path: Path) -> None:
    with postgres_schema(tmp_path / "a") as db, postgres_schema(tmp_path / "b") as other_db:
        engine, other = _engine(db), _engine(other_db)

        def write() -> None:
            with other.begin() as conn:  # another deployment's schema on the same database
                conn.exec_driver_sql(ALERT, {"site": "south", "id": "a1", "t": 1_000})
            with engine.begin() as conn:
                conn.exec_driver_sql(ALERT, {"site": "north", "id": "a1", "t": 1_000})
                conn.exec_driver_sql("UPDATE alerts SET state = 'acknowledged' "
                                     "WHERE site = 'north'")
                conn.exec_driver_sql(
                    "INSERT INTO server_state (site, key, value, updated_us) "
                    "VALUES ('west', 'watchdog.probe', '1', 3000)")
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO server_state (site, key, value, updated_us) "
                    "VALUES ('east', %(k)s, '[]', 2000)", {"k": VERSIONS_KEY})

        async def body() -> list[str]:
            feed = ChangeFeed(engine, asyncio.get_running_loop())
            feed.start()
            try:
                assert await asyncio.to_thread(feed.connected.wait, 20)
                assert feed.lost()  # nothing heard before: the node scans first
                assert not feed.lost()
                await asyncio.to_thread(write)
                got = [await asyncio.wait_for(feed.changed.get(), 20) for _ in range(2)]
                await asyncio.sleep(1.0)
                while not feed.changed.empty():
                    got.append(feed.changed.get_nowait())
                assert not feed.lost()  # connected throughout
                return got
            finally:
                await asyncio.to_thread(feed.stop)

        try:
            # One notification per transaction and site (PostgreSQL folds repeats).
            assert asyncio.run(body()) == ["north", "east"]
        finally:
            engine.dispose()
            other.dispose()


def test_a_node_hears_another_nodes_alert_from_the_feed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's alert book takes in an alert another node wrote, though the change scan
    cannot see it (written with a clock far behind): only the notification says so. The
    node is the site's owner (a worker), so no dead-man report refreshes its book."""
    need_nats()
    names = unique_names()
    site_path = write_site(tmp_path)
    data = tmp_path / "data"
    monkeypatch.setattr("coverwatch.storage.alerts.now_us", lambda: 1_000)
    try:
        with postgres_schema(data) as db:
            settings = base_settings(site_path, data, db_url=db, bus_url=NATS_URL,
                                     bus_prefix=names.prefix, role="worker")
            with running_server(settings, WallClock()) as kit:
                cw = kit.svc.bus.worker
                assert asyncio.run(wait_for(lambda: cw.owns(kit.svc.site.id), 60))
                time.sleep(2.0)  # the new owner's own refresh of the book is over
                other = open_store(db, data, site=kit.svc.store.site, audit_key=False)
                t0 = kit.clock() - 60_000_000
                alert = Alert(alert_id_for("lapse", "gate", "cover", t0), "lapse", "gate",
                              "cover", t0, t0 + 10_000_000, 0, 1)
                try:
                    deadline = time.monotonic() + 60
                    while alert.id not in kit.svc.book:
                        assert time.monotonic() < deadline, "the feed never told the node"
                        # Again until heard: the feed may not be listening yet.
                        other.record_alert_event(alert.to_record(), actor="engine",
                                                 action="alert.raised")
                        time.sleep(1.0)
                finally:
                    other.close()
    finally:
        asyncio.run(cleanup(NATS_URL, names))
