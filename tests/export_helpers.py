"""Small health exports made in the tests: Apple Health XML (bare or zipped) and Health
Connect SQLite databases, and their upload through the API."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from conftest import Actor

API = "/api/v1/integrations"
#: The internal DTD real exports carry (element and attribute declarations only).
DTD = """<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary)*)>
<!ATTLIST HealthData locale CDATA #REQUIRED>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record type CDATA #REQUIRED unit CDATA #IMPLIED value CDATA #IMPLIED>
]>"""
APPLE_DATE = "%Y-%m-%d %H:%M:%S %z"
#: Nested entities (the "billion laughs" expansion): refused before anything is read.
BILLION_LAUGHS = """<!DOCTYPE HealthData [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>"""


def record(kind: str, start: datetime, value: str, unit: str | None = None,
           end: datetime | None = None, source: str = "Ana's Apple Watch",
           device: str | None = None) -> str:  # fmt: skip
    """A ``Record``; ``device``: the model (``Watch``, ``iPhone``) its device attribute
    names, as Apple writes it (HTML-escaped)."""
    unit_attr = f' unit="{unit}"' if unit is not None else ""
    if device is not None:
        unit_attr += (f' device="&lt;&lt;HKDevice: 0x600001&gt;, name:{device}, '
                      f'manufacturer:Apple Inc., model:{device}, software:17.1&gt;"')  # fmt: skip
    finish = (end or start).strftime(APPLE_DATE)
    return (f'<Record type="{kind}" sourceName="{source}" sourceVersion="11.1"{unit_attr} '
            f'creationDate="{finish}" startDate="{start.strftime(APPLE_DATE)}" '
            f'endDate="{finish}" value="{value}">'
            '<MetadataEntry key="HKWasUserEntered" value="0"/></Record>')  # fmt: skip


def apple_xml(records: list[str], *, dtd: str = DTD, root: str = "HealthData") -> bytes:
    body = "\n".join(records)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{dtd}\n<{root} locale="en_GB">\n'
            f' <ExportDate value="2026-12-04 10:00:00 +0100"/>\n'
            f' <Me HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>\n'
            f"{body}\n</{root}>\n").encode()  # fmt: skip


def zipped(name: str, data: bytes, *extra: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in (*extra, (name, data)):
            archive.writestr(member, content)
    return out.getvalue()


def health_connect_db(path: Path, rows: dict[str, list[tuple[Any, ...]]]) -> bytes:
    """A database with the tables Health Connect exports hold (the columns read, and the
    user's app priority per data category), and ``rows`` in them; its bytes."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE application_info_table (row_id INTEGER PRIMARY KEY, package_name TEXT,
            app_name TEXT);
        CREATE TABLE heart_rate_record_table (row_id INTEGER PRIMARY KEY, uuid BLOB,
            start_time INTEGER, start_zone_offset INTEGER, end_time INTEGER,
            app_info_id INTEGER, local_date INTEGER);
        CREATE TABLE heart_rate_record_series_table (parent_key INTEGER, epoch_millis INTEGER,
            beats_per_minute INTEGER);
        CREATE TABLE steps_record_table (row_id INTEGER PRIMARY KEY, start_time INTEGER,
            start_zone_offset INTEGER, end_time INTEGER, count INTEGER, app_info_id INTEGER);
        CREATE TABLE weight_record_table (row_id INTEGER PRIMARY KEY, time INTEGER,
            zone_offset INTEGER, weight REAL, app_info_id INTEGER);
        CREATE TABLE oxygen_saturation_record_table (row_id INTEGER PRIMARY KEY, time INTEGER,
            zone_offset INTEGER, percentage REAL, app_info_id INTEGER);
        CREATE TABLE sleep_session_record_table (row_id INTEGER PRIMARY KEY, start_time INTEGER,
            start_zone_offset INTEGER, end_time INTEGER, app_info_id INTEGER);
        CREATE TABLE distance_record_table (row_id INTEGER PRIMARY KEY, start_time INTEGER,
            start_zone_offset INTEGER, end_time INTEGER, distance REAL, app_info_id INTEGER);
        CREATE TABLE health_data_category_priority_table (row_id INTEGER PRIMARY KEY
            AUTOINCREMENT, health_data_category INTEGER UNIQUE, app_id_priority_order TEXT);
    """)
    for table, values in rows.items():
        for row in values:
            marks = ", ".join("?" * len(row))
            db.execute(f"INSERT INTO {table} VALUES ({marks})", row)
    db.commit()
    db.close()
    return path.read_bytes()


async def upload(client: httpx.AsyncClient, actor: Actor, kind: str, device_id: str | None,
                 filename: str, data: bytes) -> httpx.Response:  # fmt: skip
    fields = {"device_id": device_id} if device_id is not None else {}
    files = {"file": (filename, data, "application/octet-stream")}
    return await client.post(f"{API}/{kind}/upload", headers=actor.headers, data=fields,
                             files=files)  # fmt: skip


async def values(client: httpx.AsyncClient, actor: Actor, device_id: str,
                 metric: str) -> list[tuple[str, float, str]]:  # fmt: skip
    """(UTC time, value, unit) of the device's readings of ``metric``, oldest first."""
    answer = await client.get(f"/api/v1/devices/{device_id}/data", headers=actor.headers,
                              params={"data_type": metric, "limit": 1000})  # fmt: skip
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    out = [(datetime.fromisoformat(i["timestamp"]).isoformat(), i["value"], i["unit"])
           for i in items]  # fmt: skip
    return sorted(out)
