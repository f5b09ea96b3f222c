"""Late state events applied live: when a late duty, gate or flag event took effect.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # The live horizon when a late state event arrived and was applied there (null:
    # on time, a fix, or superseded by a newer event of the same officer, gate or flag).
    op.add_column("events", sa.Column("applied_us", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "applied_us")
