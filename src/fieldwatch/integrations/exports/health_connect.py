"""Android Health Connect exports: the SQLite database the phone exports
(``health_connect_export.db``, bare or in a zip), opened read-only.

Google does not document this database's schema. What is read is the subset public
descriptions of real exports agree on; each table is read only where it is there with
these columns (times are epoch milliseconds, offsets seconds east of UTC, the measuring
app from ``application_info_table``):

| table | columns read | metric |
|---|---|---|
| ``heart_rate_record_series_table`` (+ ``heart_rate_record_table``) | ``parent_key``, ``epoch_millis``, ``beats_per_minute`` (+ ``row_id``, ``start_zone_offset``, ``app_info_id``) | ``heart_rate`` |
| ``resting_heart_rate_record_table`` | ``time``, ``zone_offset``, ``beats_per_minute`` | ``resting_heart_rate`` |
| ``steps_record_table`` | ``start_time``, ``end_time``, ``start_zone_offset``, ``count`` | ``steps`` |
| ``distance_record_table`` | ``start_time``, ``end_time``, ``start_zone_offset``, ``distance`` (m) | ``distance`` |
| ``weight_record_table`` | ``time``, ``zone_offset``, ``weight`` (grams) | ``body_weight`` (kg) |
| ``oxygen_saturation_record_table`` | ``time``, ``zone_offset``, ``percentage`` | ``spo2`` |
| ``sleep_session_record_table`` | ``start_time``, ``end_time``, ``start_zone_offset`` | ``sleep_duration`` (min) |

**Source priority.** Several apps write the same data (Samsung Health and Fitbit both
count a walk). Health Connect counts, for any stretch of time, only the app highest in
the user's *App priority* for that data category, and its database keeps that order:
``health_data_category_priority_table`` (``health_data_category``: Android's
``HealthDataCategory``, 1 activity, 5 sleep; ``app_id_priority_order``: the
``application_info_table`` row ids, comma-separated, the first the highest). Steps,
distance (activity) and time asleep (sleep) are resolved by that order as Apple
exports are (``overlap``); apps not in the list come after those in it, and apps of
the same rank by package name.
"""  # noqa: E501

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import uuid
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.exports.base import Chunk, Chunker, InvalidExport, sniff
from fieldwatch.integrations.exports.overlap import CUMULATIVE, Resolver, resolved_chunks

MEMBER = "health_connect_export.db"


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    metric: str
    time: str
    offset: str
    value: str
    scale: float = 1.0
    end: str | None = None


TABLES = (
    _Table("resting_heart_rate_record_table", "resting_heart_rate", "time", "zone_offset",
           "beats_per_minute"),
    _Table("steps_record_table", "steps", "start_time", "start_zone_offset", "count",
           end="end_time"),
    _Table("distance_record_table", "distance", "start_time", "start_zone_offset", "distance",
           end="end_time"),
    _Table("weight_record_table", "body_weight", "time", "zone_offset", "weight", 0.001),
    _Table("oxygen_saturation_record_table", "spo2", "time", "zone_offset", "percentage"),
    _Table("sleep_session_record_table", "sleep_duration", "start_time", "start_zone_offset",
           "(end_time - start_time)", 1 / 60000, end="end_time"),
)  # fmt: skip
PRIORITY_TABLE = "health_data_category_priority_table"
#: Android's ``HealthDataCategory`` of the metrics whose sources overlap.
ACTIVITY, SLEEP = 1, 5
CATEGORY = {"steps": ACTIVITY, "distance": ACTIVITY, "sleep_duration": SLEEP}


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    db.execute("PRAGMA trusted_schema = OFF")
    return db


@contextlib.contextmanager
def open_db(path: Path, max_unpacked: int) -> Iterator[sqlite3.Connection]:
    """The export's database, read-only (unpacked next to the upload from a zip, and
    removed afterwards)."""
    kind = sniff(path)
    unpacked: Path | None = None
    if kind == "zip":
        unpacked = path.with_name(f".{path.stem}-{uuid.uuid4().hex}.db")
        _unpack(path, unpacked, max_unpacked)
    elif kind != "db":
        raise InvalidExport("Not a Health Connect export: send the exported .zip or .db.")
    try:
        db = _connect(unpacked or path)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            yield db
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise InvalidExport(f"The database cannot be read ({exc}).") from None
    finally:
        if unpacked is not None:
            unpacked.unlink(missing_ok=True)


def _unpack(path: Path, to: Path, max_unpacked: int) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == MEMBER]
            if not members:
                raise InvalidExport(f"The zip holds no {MEMBER}.")
            size = members[0].file_size
            if size > max_unpacked:
                raise InvalidExport(f"{MEMBER} unpacks to {size} bytes, over the "
                                    f"{max_unpacked} byte limit.", limit=max_unpacked)  # fmt: skip
            with archive.open(members[0]) as src, to.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        to.unlink(missing_ok=True)
        raise InvalidExport(f"The zip cannot be read ({exc}).") from None


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}


def _known(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def check(path: Path, max_unpacked: int) -> None:
    """Refuse what is not a Health Connect export before it is accepted."""
    with open_db(path, max_unpacked) as db:
        names = _known(db)
    readable = {t.name for t in TABLES} | {"heart_rate_record_series_table"}
    if not names & readable:
        raise InvalidExport(
            "Not a Health Connect export: the database has none of the tables read "
            "(e.g. steps_record_table).",
            tables_read=sorted(readable),
        )


def _ts(millis: object, offset: object) -> datetime | None:
    if not isinstance(millis, int | float):
        return None
    zone = timezone(timedelta(seconds=int(offset))) if isinstance(offset, int) else UTC
    try:
        return datetime.fromtimestamp(millis / 1000, UTC).astimezone(zone)
    except (OverflowError, ValueError, OSError):
        return None


def _sources(db: sqlite3.Connection, names: set[str]) -> dict[object, str]:
    if "application_info_table" not in names:
        return {}
    if not {"row_id", "package_name"} <= _columns(db, "application_info_table"):
        return {}
    return dict(db.execute("SELECT row_id, package_name FROM application_info_table"))


def _priorities(db: sqlite3.Connection, names: set[str]) -> dict[int, list[int]]:
    """The user's app priority per data category: app ids, the highest first."""
    if PRIORITY_TABLE not in names:
        return {}
    if not {"health_data_category", "app_id_priority_order"} <= _columns(db, PRIORITY_TABLE):
        return {}
    out: dict[int, list[int]] = {}
    for category, order in db.execute(
        f"SELECT health_data_category, app_id_priority_order FROM {PRIORITY_TABLE}"  # noqa: S608
    ):
        ids = [int(part) for part in str(order or "").split(",") if part.strip().isdigit()]
        if isinstance(category, int):
            out[category] = ids
    return out


def _rank(priorities: dict[int, list[int]], metric: str, app: object) -> int:
    """Where ``app`` is in the priority of ``metric``'s category (lower counts first);
    after every app listed when it is not."""
    order = priorities.get(CATEGORY.get(metric, -1), [])
    return order.index(app) if isinstance(app, int) and app in order else len(order)


def _rows(
    db: sqlite3.Connection, names: set[str]
) -> Iterator[tuple[str, object, object, object, object, object]]:
    """(metric, time ms, offset s, value, app id, end ms) of every readable row. The SQL
    is built from this module's own table and column names only (never from the file)."""
    if {"heart_rate_record_series_table", "heart_rate_record_table"} <= names:
        parent = _columns(db, "heart_rate_record_table")
        offset = "p.start_zone_offset" if "start_zone_offset" in parent else "NULL"
        app = "p.app_info_id" if "app_info_id" in parent else "NULL"
        for row in db.execute(
            f"SELECT s.epoch_millis, {offset}, s.beats_per_minute, {app} "  # noqa: S608
            "FROM heart_rate_record_series_table s "
            "JOIN heart_rate_record_table p ON p.row_id = s.parent_key ORDER BY s.epoch_millis"
        ):
            yield ("heart_rate", *row, None)
    for table in TABLES:
        if table.name not in names:
            continue
        cols = _columns(db, table.name)
        if table.time not in cols:
            continue
        offset = table.offset if table.offset in cols else "NULL"
        app = "app_info_id" if "app_info_id" in cols else "NULL"
        end = table.end if table.end in cols else "NULL"
        for row in db.execute(
            f"SELECT {table.time}, {offset}, {table.value}, {app}, {end} "  # noqa: S608
            f"FROM {table.name} ORDER BY {table.time}"
        ):
            value = row[2] * table.scale if isinstance(row[2], int | float) else None
            yield table.metric, row[0], row[1], value, row[3], row[4]


def read(path: Path, max_unpacked: int) -> Generator[Chunk]:
    """The export's readings, chunk by chunk: in the order of the tables, then steps,
    distance and sleep with their overlapping apps resolved by the user's app priority."""

    def records(chunker: Chunker, resolver: Resolver) -> Iterator[Chunk]:
        with open_db(path, max_unpacked) as db:
            yield from _records(db, chunker, resolver)

    return resolved_chunks(path.parent, records)


def _records(db: sqlite3.Connection, chunker: Chunker, resolver: Resolver) -> Generator[Chunk]:
    names = _known(db)
    sources = _sources(db, names)
    priorities = _priorities(db, names)
    try:
        for metric, millis, offset, value, app, end_ms in _rows(db, names):
            ts = _ts(millis, offset)
            if ts is None:
                continue
            number = round(float(value), 4) if isinstance(value, int | float) else None
            if metric in CUMULATIVE and number is not None:
                end = max(ts, _ts(end_ms, offset) or ts)
                if metric == "sleep_duration":  # its value is its length: whole minutes
                    end = ts + timedelta(minutes=number)
                resolver.add(metric, ts, end, number, sources.get(app),
                             _rank(priorities, metric, app))  # fmt: skip
                continue
            chunk = chunker.add(metric, sources.get(app), Sample(ts, number))
            if chunk is not None:
                yield chunk
    except sqlite3.DatabaseError as exc:
        raise InvalidExport(f"The database cannot be read ({exc}).") from None
