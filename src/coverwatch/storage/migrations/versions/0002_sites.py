"""A ``site`` column on every per-site table, part of each table's keys.

Rows stored before this revision belong to the site ``default``: a single-site
deployment keeps working unchanged. Deployment-wide tables (users, api tokens,
sessions, qualifications) get no column: officers and people work several sites.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_DEFAULT = "default"
# Tables whose primary key gains the site: (table, old key columns).
_KEYED = {
    "alerts": ["id"],
    "server_state": ["key"],
    "audit": ["id"],
    "orders_versions": ["post", "version"],
}
# (table, old index name, new index name, new columns, unique)
_INDEXES = [
    ("events", "ix_events_key", "ix_events_site_key", ["site", "key"], True),
    ("events", "ix_events_t_us_id", "ix_events_site_t_us_id", ["site", "t_us", "id"], False),
    ("alerts", "ix_alerts_alert_at_us_id", "ix_alerts_site_alert_at_us_id",
     ["site", "alert_at_us", "id"], False),
    ("roster_shifts", "ix_roster_shifts_start_us_end_us", "ix_roster_shifts_site_start_us_end_us",
     ["site", "start_us", "end_us"], False),
]
_PLAIN = ["events", "devices", "roster_shifts", "orders_acknowledgements"]
_ALERT_UQ_OLD = "uq_alerts_kind_post_rule_lapse_start_us"
_ALERT_UQ_NEW = "uq_alerts_site_kind_post_rule_lapse_start_us"


def _site_column() -> sa.Column[str]:
    return sa.Column("site", sa.Text(), nullable=False, server_default=_DEFAULT)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in _PLAIN + list(_KEYED):
        with warnings.catch_warnings(), op.batch_alter_table(
            table, recreate="always" if sqlite else "auto"
        ) as batch:
            # SQLite's table copy takes the new key over the reflected one, and says so.
            warnings.filterwarnings("ignore", r".*not matching locally specified columns",
                                    category=sa.exc.SAWarning)
            batch.add_column(_site_column())
            if table in _KEYED:
                if not sqlite:
                    batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", ["site", *_KEYED[table]])
            if table == "alerts":
                batch.drop_constraint(_ALERT_UQ_OLD, type_="unique")
                batch.create_unique_constraint(
                    _ALERT_UQ_NEW, ["site", "kind", "post", "rule", "lapse_start_us"]
                )
    for table, old, new, columns, unique in _INDEXES:
        op.drop_index(old, table_name=table)
        op.create_index(new, table, columns, unique=unique)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, old, new, columns, unique in _INDEXES:
        op.drop_index(new, table_name=table)
        op.create_index(old, table, columns[1:], unique=unique)
    for table in _PLAIN + list(_KEYED):
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            if table == "alerts":
                batch.drop_constraint(_ALERT_UQ_NEW, type_="unique")
                batch.create_unique_constraint(
                    _ALERT_UQ_OLD, ["kind", "post", "rule", "lapse_start_us"]
                )
            if table in _KEYED:
                if not sqlite:
                    batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", _KEYED[table])
            batch.drop_column("site")
