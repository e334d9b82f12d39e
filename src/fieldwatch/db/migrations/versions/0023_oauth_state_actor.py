"""vendor authorizations in flight: who started them

A connection made through an API key names the key (``api_key:<name>``) as its
``created_by``, as audit rows do, instead of a bare "api".

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("integration_oauth_states", sa.Column("actor", sa.String(300), nullable=True))


def downgrade() -> None:
    op.drop_column("integration_oauth_states", "actor")
