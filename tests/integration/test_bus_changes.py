"""Distributed mode's change scan: one query names the sites whose alerts or rule versions
were written, so a node refreshes those and not every site every round.

On a PostgreSQL schema of its own: writes to one site's alerts and versions show in the
scan with a signature that changes with every further write (a late commit of an older
timestamp included), and not at all for a site nobody wrote to or before ``since``.
"""

from __future__ import annotations

from pathlib import Path

from clusterkit import postgres_schema
from sqlalchemy import create_engine

from coverwatch.server.cluster import changed_sites
from coverwatch.storage.versions import VERSIONS_KEY

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
