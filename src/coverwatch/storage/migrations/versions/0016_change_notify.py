"""Change notification for distributed mode: alerts' and rule versions' writes NOTIFY.

Every node keeps each site's alert book and rule version in step with PostgreSQL. On
PostgreSQL an AFTER trigger on ``alerts`` (every insert and update) and on
``server_state`` (the rule versions' row only) sends ``pg_notify('coverwatch_changes',
'<schema> <site>')`` in the writing transaction, delivered at its commit, so a node
LISTENing refreshes a site when it changes instead of polling (server/changefeed.py).
The slow scan behind it reads ``alerts`` by ``updated_us``: that now has an index (on
SQLite too).

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None

_NOTIFY = """
CREATE FUNCTION coverwatch_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('coverwatch_changes', current_schema() || ' ' || NEW.site);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_index("ix_alerts_updated_us", "alerts", ["updated_us"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_NOTIFY)
    op.execute("CREATE TRIGGER coverwatch_notify_change AFTER INSERT OR UPDATE ON alerts "
               "FOR EACH ROW EXECUTE FUNCTION coverwatch_notify_change()")
    op.execute("CREATE TRIGGER coverwatch_notify_change AFTER INSERT OR UPDATE ON server_state "
               "FOR EACH ROW WHEN (NEW.key = 'site.versions') "
               "EXECUTE FUNCTION coverwatch_notify_change()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("alerts", "server_state"):
            op.execute(f"DROP TRIGGER IF EXISTS coverwatch_notify_change ON {table}")
        op.execute("DROP FUNCTION IF EXISTS coverwatch_notify_change()")
    op.drop_index("ix_alerts_updated_us", table_name="alerts")
