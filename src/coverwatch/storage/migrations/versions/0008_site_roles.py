"""Roles per site: a supervisor of one site sees nothing of another.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "site_roles",
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_site_roles_user_id_users"),
        sa.PrimaryKeyConstraint("user_id", "site", name="pk_site_roles"),
    )


def downgrade() -> None:
    op.drop_table("site_roles")
