"""Distributed mode: the bus outbox (what a gateway committed but JetStream has not yet
acknowledged) and the per-site fence (the lease epoch every owner's write is checked against).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "bus_outbox",
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("earliest_us", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "first_id", name="pk_bus_outbox"),
    )
    op.create_table(
        "bus_fences",
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", name="pk_bus_fences"),
    )


def downgrade() -> None:
    op.drop_table("bus_fences")
    op.drop_table("bus_outbox")
