"""deleting a series deletes its readings and rollups, in the database

``readings``, ``rollup_1m`` and ``rollup_1h`` have no foreign key to ``series``. A
trigger on ``series`` removes a deleted series' rows from all three, so purging a device is one
``DELETE FROM devices``: its series go by the foreign key's cascade, their telemetry by
this trigger, on PostgreSQL (one statement-level trigger over the deleted rows) and on
SQLite (a row-level one) alike. (On SQLite a later batch alteration of ``series``
rebuilds the table without its triggers: such a migration must create this one again.)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-15
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION fieldwatch_series_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM readings WHERE series_id IN (SELECT id FROM old_rows);
    DELETE FROM rollup_1m WHERE series_id IN (SELECT id FROM old_rows);
    DELETE FROM rollup_1h WHERE series_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END
$$
"""

PG_TRIGGER = """
CREATE TRIGGER series_deleted AFTER DELETE ON series
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION fieldwatch_series_deleted()
"""

SQLITE_TRIGGER = """
CREATE TRIGGER series_deleted AFTER DELETE ON series FOR EACH ROW BEGIN
    DELETE FROM readings WHERE series_id = OLD.id;
    DELETE FROM rollup_1m WHERE series_id = OLD.id;
    DELETE FROM rollup_1h WHERE series_id = OLD.id;
END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS series_deleted ON series")
        op.execute("DROP FUNCTION IF EXISTS fieldwatch_series_deleted()")
    else:
        op.execute("DROP TRIGGER IF EXISTS series_deleted")
