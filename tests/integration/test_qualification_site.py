"""Qualifications belong to a site (migration 0010, issue 19 F6): records from
before belong to the site ``default``; a record written at one site does not
count at another, on SQLite and PostgreSQL; the migration goes down again.

On the old schema the table had no site: a store of any site listed every
record, so an officer qualified through one site's routes was armed everywhere.
"""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from conftest import Database
from coverwatch.domain.briefing import Qualification
from coverwatch.storage import open_store
from coverwatch.storage.base import make_engine
from coverwatch.storage.store import alembic_config, sqlite_url

ARMED = Qualification("A1", "armed", 2_000_000_000_000_000, None)


def _engine(db: Database):  # type: ignore[no-untyped-def]
    return make_engine(db.url or sqlite_url(db.data_dir))


def test_records_from_before_belong_to_the_default_site_and_go_down_again(
        database: Database) -> None:
    database.data_dir.mkdir(parents=True, exist_ok=True)
    engine = _engine(database)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0008")
        conn.execute(text(
            "INSERT INTO qualifications (officer, name, valid_until_us, updated_by, updated_us)"
            " VALUES ('A1', 'armed', 2000000000000000, 'cli', 1)"))
        conn.commit()
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
        assert "site" in {c["name"] for c in inspect(conn).get_columns("qualifications")}
        assert conn.execute(text("SELECT site FROM qualifications")).scalars().all() == [
            "default"]
    engine.dispose()
    default = open_store(database.url, database.data_dir)
    north = open_store(database.url, database.data_dir, site="north")
    try:
        assert [q.officer for q in default.list_qualifications()] == ["A1"]
        assert north.list_qualifications() == []
        north.set_qualifications([ARMED], actor="north-admin")  # the same key at north: kept
        assert [q.name for q in north.list_qualifications()] == ["armed"]
    finally:
        default.close()
        north.close()
    engine = _engine(database)
    with engine.connect() as conn:
        command.downgrade(alembic_config(conn), "0008")
        conn.commit()
        assert "site" not in {c["name"] for c in inspect(conn).get_columns("qualifications")}
        assert conn.execute(text("SELECT officer, name FROM qualifications")).all() == [
            ("A1", "armed")]
    engine.dispose()


def test_a_record_written_at_one_site_counts_only_there(migrated: Database) -> None:
    north = open_store(migrated.url, migrated.data_dir, site="north")
    south = open_store(migrated.url, migrated.data_dir, site="south")
    try:
        south.set_qualifications([ARMED], actor="south-admin")
        assert north.list_qualifications() == [] and north.list_qualifications("A1") == []
        assert south.list_qualifications("A1") == [ARMED]
        # Renewing at north leaves south's record as it was.
        renewed = Qualification("A1", "armed", 2_100_000_000_000_000, None)
        north.set_qualifications([renewed], actor="north-admin")
        assert south.list_qualifications() == [ARMED]
        assert north.list_qualifications() == [renewed]
    finally:
        north.close()
        south.close()
