"""Contacts (a list of notification URLs per user), delivery receipts and dispatches;
users.notify_url moves into contacts.

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0005"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", _ID, sa.ForeignKey("users.id", ondelete="CASCADE",
                                                name="fk_contacts_user_id_users"),
                  nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contacts"),
        sa.UniqueConstraint("user_id", "position", name="uq_contacts_user_id_position"),
    )
    op.execute(
        "INSERT INTO contacts (user_id, position, url, created_us) "
        "SELECT id, 0, notify_url, created_us FROM users WHERE notify_url IS NOT NULL "
        "AND notify_url <> ''"
    )
    # Plain ALTER (SQLite >= 3.35 and PostgreSQL): a batch rebuild of users would
    # drop the table, and with foreign keys on that cascades to sessions and contacts.
    op.execute("ALTER TABLE users DROP COLUMN notify_url")
    op.create_table(
        "deliveries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("site", sa.Text(), nullable=False, server_default="default"),
        sa.Column("alert_id", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("person", sa.Text()),
        sa.Column("address", sa.Text()),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_site_alert_id_id", "deliveries", ["site", "alert_id", "id"])
    op.create_table(
        "dispatches",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("site", sa.Text(), nullable=False, server_default="default"),
        sa.Column("alert_id", sa.Text(), nullable=False),
        sa.Column("officer", sa.Text(), nullable=False),
        sa.Column("post", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("by_user", sa.Text(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dispatches"),
    )
    op.create_index("ix_dispatches_site_officer_at_us", "dispatches", ["site", "officer", "at_us"])
    op.create_index("ix_dispatches_site_alert_id", "dispatches", ["site", "alert_id"])


def downgrade() -> None:
    op.drop_index("ix_dispatches_site_alert_id", "dispatches")
    op.drop_index("ix_dispatches_site_officer_at_us", "dispatches")
    op.drop_table("dispatches")
    op.drop_index("ix_deliveries_site_alert_id_id", "deliveries")
    op.drop_table("deliveries")
    op.add_column("users", sa.Column("notify_url", sa.Text()))
    op.execute(
        "UPDATE users SET notify_url = (SELECT url FROM contacts WHERE contacts.user_id = users.id "
        "AND contacts.position = 0)"
    )
    op.drop_table("contacts")
