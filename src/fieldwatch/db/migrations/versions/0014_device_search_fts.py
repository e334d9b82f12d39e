"""the device search finds its rows by a trigram index on SQLite too

``GET /devices?q=`` (and the console's inventory search) is a substring search on name
and serial number: on SQLite a scan of the workspace, twice (the page and its count;
100,000 devices: ~90 ms a search). An FTS5 table with the ``trigram`` tokenizer
(SQLite >= 3.34) indexes both columns: ``device_search``, an external-content table
over ``devices`` keyed by the device row's rowid, kept in step by triggers on insert,
delete and a change of name or serial number (a delete cascading from a workspace fires
them too). The query keeps its ``LIKE``: the index only narrows the rows it reads
(devices/listing.py). PostgreSQL has its trigram GIN indexes (0002); nothing changes
there, nor on a SQLite without the trigram tokenizer (the search scans, as before).

A later migration that rebuilds ``devices`` (batch mode's copy and rename) drops these
triggers and renumbers the rows: it must recreate them (``create_search``) afterwards.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlite3

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TRIGGERS = ("devices_search_insert", "devices_search_delete", "devices_search_update")


def _available() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 34, 0)


def create_search() -> None:
    """The search table, filled from ``devices``, and its triggers."""
    for statement in (
        "CREATE VIRTUAL TABLE device_search USING fts5(name, serial_number,"
        " content='devices', content_rowid='rowid', tokenize='trigram')",
        "INSERT INTO device_search(device_search) VALUES ('rebuild')",
        "CREATE TRIGGER devices_search_insert AFTER INSERT ON devices BEGIN"
        " INSERT INTO device_search(rowid, name, serial_number)"
        " VALUES (new.rowid, new.name, new.serial_number); END",
        "CREATE TRIGGER devices_search_delete AFTER DELETE ON devices BEGIN"
        " INSERT INTO device_search(device_search, rowid, name, serial_number)"
        " VALUES ('delete', old.rowid, old.name, old.serial_number); END",
        "CREATE TRIGGER devices_search_update AFTER UPDATE OF name, serial_number ON devices"
        " BEGIN"
        " INSERT INTO device_search(device_search, rowid, name, serial_number)"
        " VALUES ('delete', old.rowid, old.name, old.serial_number);"
        " INSERT INTO device_search(rowid, name, serial_number)"
        " VALUES (new.rowid, new.name, new.serial_number); END",
    ):
        op.execute(statement)


def drop_search() -> None:
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS device_search")


def upgrade() -> None:
    if _available():
        create_search()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        drop_search()
