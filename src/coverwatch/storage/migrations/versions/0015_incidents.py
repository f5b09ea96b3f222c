"""Incidents: a flood's alerts grouped as one cause, kept across a restart (issue 21).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("site", sa.Text(), nullable=False, server_default="default"),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("started_us", sa.BigInteger(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_site_started_us_id", "incidents",
                    ["site", "started_us", "id"])


def downgrade() -> None:
    op.drop_table("incidents")
