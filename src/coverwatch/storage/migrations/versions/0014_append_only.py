"""Append-only evidence on PostgreSQL: triggers refuse changes; purges go through one function.

On PostgreSQL, ``audit``, ``tlog_leaves`` and ``purges`` refuse every UPDATE, DELETE and
TRUNCATE, whoever asks (an owner who disables the trigger is outside what a trigger can
stop: docs/evidence.md). ``events`` refuse DELETE and TRUNCATE except from inside
``coverwatch_purge_positions``, a SECURITY DEFINER function (owned by the migrating role,
its search_path pinned) that deletes a site's fixes before a time outside standing legal
holds and writes a ``purges`` row saying what, when, under which rule and by whom: the
only way to delete raw positions. A server role given SELECT/INSERT (and UPDATE on
events) but no DELETE can still purge through it. SQLite has no triggers here: it keeps
its behaviour, and the store writes the ``purges`` row itself.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_FROZEN = ("audit", "tlog_leaves", "purges")

_REFUSE = """
CREATE FUNCTION coverwatch_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ctx text;
BEGIN
    IF TG_TABLE_NAME = 'events' AND TG_OP = 'DELETE' THEN
        GET DIAGNOSTICS ctx = PG_CONTEXT;
        IF ctx LIKE '%function coverwatch_purge_positions(%'
           AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class
                               WHERE oid = TG_RELID) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'coverwatch: DELETE on events refused: raw positions are removed '
            'only by coverwatch_purge_positions (retention), which records the purge'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION 'coverwatch: % on % refused: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

_PURGE = """
CREATE FUNCTION coverwatch_purge_positions(
    p_site text, p_before_us bigint, p_actor text, p_rule text, p_now_us bigint
) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM events e
    WHERE e.site = p_site AND e.kind = 'fix' AND e.t_us < p_before_us
      AND NOT EXISTS (SELECT 1 FROM legal_holds h
                      WHERE h.site = p_site AND h.released_us IS NULL
                        AND h.since_us <= e.t_us AND h.until_us > e.t_us);
    GET DIAGNOSTICS removed = ROW_COUNT;
    INSERT INTO purges (site, at_us, what, before_us, removed, rule, actor)
    VALUES (p_site, p_now_us, 'events:fix', p_before_us, removed, p_rule, p_actor);
    RETURN removed;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "purges",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("site", sa.Text(), nullable=False, server_default="default"),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("before_us", sa.BigInteger(), nullable=False),
        sa.Column("removed", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_purges"),
    )
    op.create_index("ix_purges_site_before_us", "purges", ["site", "before_us"])
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar()
    quoted = bind.dialect.identifier_preparer.quote_identifier(str(schema))
    op.execute(_REFUSE)
    op.execute(_PURGE.format(schema=quoted))
    for table in _FROZEN:
        op.execute(f"CREATE TRIGGER coverwatch_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION coverwatch_append_only()")
    op.execute("CREATE TRIGGER coverwatch_append_only BEFORE DELETE ON events "
               "FOR EACH ROW EXECUTE FUNCTION coverwatch_append_only()")
    for table in (*_FROZEN, "events"):
        op.execute(f"CREATE TRIGGER coverwatch_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION coverwatch_append_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*_FROZEN, "events"):
            op.execute(f"DROP TRIGGER IF EXISTS coverwatch_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS coverwatch_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS coverwatch_purge_positions(text, bigint, text, "
                   "text, bigint)")
        op.execute("DROP FUNCTION IF EXISTS coverwatch_append_only()")
    op.drop_index("ix_purges_site_before_us", table_name="purges")
    op.drop_table("purges")
