"""The site column (migration 0002): rows stored before it belong to the site
``default``; per-site rows of one site are invisible to a store of another."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from conftest import Database
from coverwatch.storage import open_store
from coverwatch.storage.audit import verify_audit
from coverwatch.storage.base import make_engine
from coverwatch.storage.store import alembic_config, sqlite_url
from coverwatch.storage.tables import PER_SITE_TABLES


def _engine(db: Database):  # type: ignore[no-untyped-def]
    return make_engine(db.url or sqlite_url(db.data_dir))


def test_rows_from_before_sites_belong_to_the_default_site(database: Database) -> None:
    database.data_dir.mkdir(parents=True, exist_ok=True)
    engine = _engine(database)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(text(
            "INSERT INTO events (kind, key, t_us, officer, x, y, accuracy, source, received_us,"
            " late) VALUES ('fix', 'fix|A1|5', 5, 'A1', 1.0, 2.0, 0.0, 'http', 6, false)"))
        conn.execute(text("INSERT INTO server_state (key, value) VALUES ('horizon', '42')"))
        conn.commit()
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
        columns = {t.name: {c["name"] for c in inspect(conn).get_columns(t.name)}
                   for t in PER_SITE_TABLES}
    engine.dispose()
    assert all("site" in cols for cols in columns.values()), columns
    store = open_store(database.url, database.data_dir)
    try:
        assert [e["officer"] for e in store.events_since(0)] == ["A1"]
        assert store.get_state("horizon") == "42"
    finally:
        store.close()


def test_per_site_rows_are_kept_apart(migrated: Database) -> None:
    a = open_store(migrated.url, migrated.data_dir, site="north")
    b = open_store(migrated.url, migrated.data_dir, site="south")
    try:
        row = {"kind": "fix", "t_us": 1, "officer": "A1", "x": 0.0, "y": 0.0, "source": "http"}
        assert a.append_events([row]).inserted == 1
        # The same event at another site is not a duplicate of the first.
        assert b.append_events([row]).inserted == 1
        assert b.append_events([row]).duplicates == 1
        a.set_state("horizon", "1")
        b.set_state("horizon", "2")
        assert (a.get_state("horizon"), b.get_state("horizon")) == ("1", "2")
        a.append_audit("alice", "test.north", "x", {})
        assert [e.action for e in a.audit_entries()] == ["test.north"]
        assert b.audit_entries() == []
        assert verify_audit(a).ok and verify_audit(b).ok
    finally:
        a.close()
        b.close()
