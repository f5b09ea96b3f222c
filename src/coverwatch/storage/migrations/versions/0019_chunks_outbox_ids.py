"""The bus outbox records each commit group's exact event ids (``ids``, runs such as
``"17-40,43"``), not only their range: the range also holds other gateways' rows, and the
owner's relay must rebuild exactly the messages the gateway published (one per chunk of the
group's own rows), so that JetStream's duplicate window drops a copy. Rows noted before
this revision have none (NULL): the relay republishes their events one by one, as before.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("bus_outbox", sa.Column("ids", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("bus_outbox", "ids")
