"""Device reports (every phone upload, used as a fix or not), where a fix's accuracy
came from, and event keys that name the sender and the content.

Existing events are re-keyed to ``<kind>|<ident>|<t_us>|<device>|<digest>`` so
that history re-sent after the upgrade is still recognised as a duplicate.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("accuracy_source", sa.Text()))
    op.create_table(
        "device_reports",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("site", sa.Text(), nullable=False, server_default="default"),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("device", sa.Text(), nullable=False),
        sa.Column("officer", sa.Text()),
        sa.Column("t_us", sa.BigInteger()),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.Column("battery", sa.Float()),
        sa.Column("charging", sa.Boolean()),
        sa.Column("alarm", sa.Text()),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_device_reports"),
    )
    op.create_index("ix_device_reports_site_key", "device_reports", ["site", "key"],
                    unique=True)
    op.create_index("ix_device_reports_site_device_received_us", "device_reports",
                    ["site", "device", "received_us"])
    op.create_index("ix_device_reports_site_officer_received_us", "device_reports",
                    ["site", "officer", "received_us"])
    _rekey()


# Frozen copy of coverwatch.storage.store.event_digest at this revision.
def _num(value: object) -> str:
    return "" if value is None else repr(float(value))  # type: ignore[arg-type]


def _digest(kind: str, r: sa.Row[tuple[object, ...]]) -> str:
    if kind == "fix":
        parts = [_num(r.x), _num(r.y), _num(r.accuracy)]
    elif kind == "duty":
        parts = [str(bool(r.on)), str(r.capabilities or "")]
    elif kind == "gate":
        parts = [str(bool(r.open))]
    else:
        parts = [str(bool(r.on))]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _rekey() -> None:
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(sa.text(
            'SELECT id, kind, key, t_us, officer, post, flag, x, y, accuracy, "on", "open", '
            "capabilities, device FROM events WHERE id > :after ORDER BY id LIMIT 5000"),
            {"after": after}).fetchall()
        if not rows:
            return
        for r in rows:
            if r.key.count("|") != 2:
                continue  # already in the new form
            ident = {"fix": r.officer, "duty": r.officer, "gate": r.post}.get(r.kind, r.flag)
            key = f"{r.kind}|{ident}|{r.t_us}|{r.device or ''}|{_digest(r.kind, r)}"
            conn.execute(sa.text("UPDATE events SET key = :key WHERE id = :id"),
                         {"key": key, "id": r.id})
        after = rows[-1].id


def downgrade() -> None:
    op.drop_table("device_reports")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("accuracy_source")
