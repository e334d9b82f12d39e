"""Trigram indexes for device search on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

``GET /devices?q=`` is a substring search on name and serial number. On PostgreSQL
with the pg_trgm extension available (it ships with PostgreSQL's contrib package),
GIN trigram indexes let it use an index instead of scanning the workspace. Without
pg_trgm, and on SQLite, nothing changes: the search still works, only slower.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {"ix_devices_name_trgm": "name", "ix_devices_serial_number_trgm": "serial_number"}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).scalar()
    if not available:
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON devices USING gin (lower({column}) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
