"""An index on alerts' state: a start reads the alerts not closed (and those of the last
168 h by the alert-time index) without reading every stored alert (issue 25).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_alerts_site_state", "alerts", ["site", "state"])


def downgrade() -> None:
    op.drop_index("ix_alerts_site_state", table_name="alerts")
