"""Evidence: a MAC on each audit entry, report engine checkpoints, legal holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("mac", sa.Text()))
    op.create_table(
        "engine_checkpoints",
        sa.Column("site", sa.Text(), primary_key=True, server_default="default"),
        sa.Column("at_us", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("version_us", sa.BigInteger(), nullable=False),
        sa.Column("version_sha", sa.Text(), nullable=False),
        sa.Column("max_event_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "at_us", name="pk_engine_checkpoints"),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("site", sa.Text(), nullable=False, server_default="default"),
        sa.Column("since_us", sa.BigInteger(), nullable=False),
        sa.Column("until_us", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("released_by", sa.Text()),
        sa.Column("released_us", sa.BigInteger()),
        sa.PrimaryKeyConstraint("id", name="pk_legal_holds"),
    )


def downgrade() -> None:
    op.drop_table("legal_holds")
    op.drop_table("engine_checkpoints")
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("mac")
