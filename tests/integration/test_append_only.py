"""Append-only evidence at rest (migration 0014): on PostgreSQL the audit, log and purge tables
refuse UPDATE, DELETE and TRUNCATE; positions leave only through the purge function, which
records the purge; a server role without DELETE can still purge. SQLite keeps its behaviour."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from coverwatch.domain.time import US_PER_S
from coverwatch.storage import Store
from coverwatch.storage.tables import audit, events, purges, tlog_leaves

T0 = 1_800_000_000 * US_PER_S


def _fill(store: Store) -> None:
    store.append_events([{"kind": "fix", "t_us": T0 + i * US_PER_S, "officer": "A1",
                          "x": float(i), "y": 0.0, "accuracy": 5.0, "source": "test"}
                         for i in range(10)])
    for i in range(3):
        store.append_audit("ann", "orders.changed", f"post:p{i}", {"n": i})


def _count(store: Store, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def _refused(store: Store, statement: object) -> str:
    with pytest.raises(DBAPIError) as caught, store.engine.begin() as conn:
        conn.execute(statement)
    return str(caught.value.orig)


def test_purge_removes_positions_and_records_the_purge(store: Store) -> None:
    _fill(store)
    store.add_hold(T0 + 2 * US_PER_S, T0 + 4 * US_PER_S, "inquiry", "ann")
    removed = store.purge_positions(T0 + 6 * US_PER_S, "server", retention_days=30.0)
    assert removed == 4  # 0, 1, 4, 5: 2 and 3 are held
    with store.engine.connect() as conn:
        row = conn.execute(select(purges)).one()
    assert (row.what, row.before_us, row.removed, row.rule, row.actor) == (
        "events:fix", T0 + 6 * US_PER_S, 4, "retention.positions_days=30.0", "server")
    assert store.audit_entries(0, 100)[-1].action == "retention.purged"


def test_postgresql_refuses_changes_to_audit_log_and_purges(store: Store) -> None:
    if store.dialect != "postgresql":
        # SQLite keeps its behaviour (docs/evidence.md): no triggers, the chain and the
        # log's heads are what catch an edit there.
        _fill(store)
        with store.engine.begin() as conn:
            assert conn.execute(update(audit).values(actor="mallory")).rowcount == 3
        return
    _fill(store)
    store.purge_positions(T0 + 2 * US_PER_S, "server", retention_days=1.0)
    for statement in (update(audit).values(actor="mallory"), delete(audit),
                      update(tlog_leaves).values(hash="00"), delete(tlog_leaves),
                      update(purges).values(removed=0), delete(purges)):
        assert "append-only" in _refused(store, statement)
    for table in ("audit", "tlog_leaves", "purges", "events"):
        why = _refused(store, text(f"TRUNCATE {table}"))
        assert "TRUNCATE" in why and "refused" in why
    assert "only by coverwatch_purge_positions" in _refused(store, delete(events))
    assert _count(store, audit) == 4 and _count(store, events) == 8 and _count(store, purges) == 1


def test_a_server_role_without_delete_purges_only_through_the_function(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("roles and definer functions are PostgreSQL's")
    _fill(store)
    role = f"cw_server_{uuid.uuid4().hex[:8]}"
    with store.engine.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        conn.execute(text(f'CREATE ROLE "{role}" NOLOGIN'))
    try:
        with store.engine.begin() as conn:
            conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            conn.execute(text(f'GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA "{schema}" '
                              f'TO "{role}"'))
            conn.execute(text(f'GRANT UPDATE ON events TO "{role}"'))
        with store.engine.begin() as conn:
            conn.execute(text(f'SET LOCAL ROLE "{role}"'))
            removed = conn.execute(text(
                "SELECT coverwatch_purge_positions(:s, :b, 'server', 'test', 0)"),
                {"s": store.site, "b": T0 + 3 * US_PER_S}).scalar()
        assert removed == 3
        with pytest.raises(DBAPIError), store.engine.begin() as conn:
            conn.execute(text(f'SET LOCAL ROLE "{role}"'))
            conn.execute(delete(events))
        # Not even by naming a function of its own after the purge function.
        with pytest.raises(DBAPIError, match="only by coverwatch_purge_positions"), \
                store.engine.begin() as conn:
            conn.execute(text(
                "CREATE FUNCTION pg_temp.coverwatch_purge_positions(s text) RETURNS void "
                "LANGUAGE plpgsql AS $$ BEGIN DELETE FROM events WHERE site = s; END $$"))
            conn.execute(text(f'GRANT ALL ON events TO "{role}"'))
            conn.execute(text(f'SET LOCAL ROLE "{role}"'))
            conn.execute(text("SELECT pg_temp.coverwatch_purge_positions(:s)"),
                         {"s": store.site})
        assert _count(store, events) == 7 and _count(store, purges) == 1
    finally:
        with store.engine.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
