"""Events unique by (site, t_us, key) instead of (site, key): the same rule (the key
holds the event's time), but a batch of fixes of thousands of officers at one time now
lands at the end of the index instead of on a page of each officer's history (issue
25: on SQLite the insert and the commit wrote a page of that index per fix).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Built beside the live table, not locking its writes for the build: a deployment's
        # gateways keep storing events while a large events table is indexed.
        with op.get_context().autocommit_block():
            op.create_index("ix_events_site_t_us_key", "events", ["site", "t_us", "key"],
                            unique=True, postgresql_concurrently=True)
            op.drop_index("ix_events_site_key", table_name="events",
                          postgresql_concurrently=True)
        return
    op.create_index("ix_events_site_t_us_key", "events", ["site", "t_us", "key"], unique=True)
    op.drop_index("ix_events_site_key", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_site_key", "events", ["site", "key"], unique=True)
    op.drop_index("ix_events_site_t_us_key", table_name="events")
