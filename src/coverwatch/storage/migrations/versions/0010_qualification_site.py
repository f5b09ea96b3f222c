"""Qualifications belong to a site: an admin of one site can no longer qualify an
officer at another (issue 19, F6).

Until now a qualification record was deployment-wide, so one written through one
site's routes counted at every site after a restart. Records stored before this
revision get the key ``default``: the site that owns the deployment's first rows
(a single-site deployment, nothing changes). In a deployment of several sites,
import each other site's qualifications again through that site's routes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import warnings
from typing import Literal

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

_DEFAULT = "default"
_OLD_UQ = "uq_qualifications_officer_name"
_NEW_UQ = "uq_qualifications_site_officer_name"


def _recreate() -> Literal["always", "auto"]:
    # SQLite cannot drop a constraint in place: batch mode copies the table.
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with warnings.catch_warnings(), op.batch_alter_table(
            "qualifications", recreate=_recreate()) as batch:
        warnings.filterwarnings("ignore", r".*not matching locally specified columns",
                                category=sa.exc.SAWarning)
        batch.add_column(sa.Column("site", sa.Text(), nullable=False,
                                   server_default=_DEFAULT))
        batch.drop_constraint(_OLD_UQ, type_="unique")
        batch.create_unique_constraint(_NEW_UQ, ["site", "officer", "name"])


def downgrade() -> None:
    # One record per officer and name comes back: the default site's, else the oldest.
    op.execute(sa.text(
        "DELETE FROM qualifications WHERE site <> :d AND EXISTS (SELECT 1 FROM "
        "qualifications o WHERE o.officer = qualifications.officer AND o.name = "
        "qualifications.name AND o.site = :d)").bindparams(d=_DEFAULT))
    op.execute(sa.text(
        "DELETE FROM qualifications WHERE id NOT IN (SELECT MIN(id) FROM qualifications q "
        "GROUP BY q.officer, q.name)"))
    with op.batch_alter_table("qualifications", recreate=_recreate()) as batch:
        batch.drop_constraint(_NEW_UQ, type_="unique")
        batch.drop_column("site")
        batch.create_unique_constraint(_OLD_UQ, ["officer", "name"])
