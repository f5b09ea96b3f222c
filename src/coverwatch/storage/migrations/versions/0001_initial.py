"""Initial schema: events, users, devices, api tokens, sessions, alerts, server state, audit,
rosters, qualifications, orders versions and acknowledgements.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copy of the schema at this revision (never import the live tables here).
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("t_us", sa.BigInteger(), nullable=False),
        sa.Column("officer", sa.Text()),
        sa.Column("x", sa.Float()),
        sa.Column("y", sa.Float()),
        sa.Column("accuracy", sa.Float()),
        sa.Column("post", sa.Text()),
        sa.Column("flag", sa.Text()),
        sa.Column("on", sa.Boolean()),
        sa.Column("open", sa.Boolean()),
        sa.Column("capabilities", sa.Text()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("device", sa.Text()),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("raw", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_key", "events", ["key"], unique=True)
    op.create_index("ix_events_t_us_id", "events", ["t_us", "id"])

    op.create_table(
        "users",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False, server_default=""),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("notify_url", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )

    op.create_table(
        "devices",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("officer", sa.Text()),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("name", name="uq_devices_name"),
        sa.UniqueConstraint("token_hash", name="uq_devices_token_hash"),
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )

    op.create_table(
        "sessions",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_sessions_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_sessions_expires_us", "sessions", ["expires_us"])

    op.create_table(
        "alerts",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("post", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("lapse_start_us", sa.BigInteger(), nullable=False),
        sa.Column("alert_at_us", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint(
            "kind",
            "post",
            "rule",
            "lapse_start_us",
            name="uq_alerts_kind_post_rule_lapse_start_us",
        ),
    )
    op.create_index("ix_alerts_alert_at_us_id", "alerts", ["alert_at_us", "id"])

    op.create_table(
        "server_state",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_us", sa.BigInteger()),
        sa.PrimaryKeyConstraint("key", name="pk_server_state"),
    )

    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
        sa.UniqueConstraint("hash", name="uq_audit_hash"),
    )

    op.create_table(
        "roster_shifts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("officer", sa.Text(), nullable=False),
        sa.Column("post", sa.Text()),
        sa.Column("patrol", sa.Text()),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_roster_shifts"),
    )
    op.create_index("ix_roster_shifts_start_us_end_us", "roster_shifts", ["start_us", "end_us"])
    op.create_index("ix_roster_shifts_officer_start_us", "roster_shifts",
                    ["officer", "start_us"])

    op.create_table(
        "qualifications",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("officer", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("valid_from_us", sa.BigInteger()),
        sa.Column("valid_until_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_qualifications"),
        sa.UniqueConstraint("officer", "name", name="uq_qualifications_officer_name"),
    )

    op.create_table(
        "orders_versions",
        sa.Column("post", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("since_us", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("changes", sa.Text()),
        sa.PrimaryKeyConstraint("post", "version", name="pk_orders_versions"),
    )

    op.create_table(
        "orders_acknowledgements",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("officer", sa.Text(), nullable=False),
        sa.Column("post", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),
        sa.Column("device", sa.Text()),
        sa.Column("user", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_orders_acknowledgements"),
    )
    op.create_index("ix_orders_acknowledgements_officer_post_at_us",
                    "orders_acknowledgements", ["officer", "post", "at_us"])


def downgrade() -> None:
    for name in (
        "orders_acknowledgements", "orders_versions", "qualifications", "roster_shifts",
        "audit", "server_state", "alerts", "sessions", "api_tokens", "devices", "users", "events",
    ):  # fmt: skip
        op.drop_table(name)
