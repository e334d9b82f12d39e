"""Database faults: a request that fails because PostgreSQL is unreachable, restarting
or refusing connections answers 503 with Retry-After, keeps its HTTP connection, logs
one warning per outage, and nothing is reused from a broken connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from conftest import Backend, Served, problem
from fieldwatch.db import faults
from fieldwatch.transports.mqtt import topics
from mqtt_peers import device_peer, dumps, eventually, gateway, latest, peers  # noqa: F401
from telemetry_helpers import device_with_token, iso, recent
from ws_helpers import connected, make_device, recv


@pytest.fixture
async def pg_admin(backend: Backend) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    if backend.name != "postgres":
        pytest.skip("terminating backends is a PostgreSQL test")
    url = make_url(backend.url)
    name = url.database
    assert name
    conn = await asyncpg.connect(
        url.set(drivername="postgresql", database="postgres").render_as_string(False)
    )
    try:
        yield conn, name
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await conn.close()


async def terminate(conn: asyncpg.Connection, name: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    )


@contextlib.asynccontextmanager
async def refusing(conn: asyncpg.Connection, name: str) -> AsyncIterator[None]:
    await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await terminate(conn, name)
    try:
        yield
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def reading(i: int) -> dict:
    return {"data_type": "temperature", "values": [{"timestamp": iso(recent(i)), "value": i}]}


async def hammer(
    http: httpx.AsyncClient, device_id: str, token: dict, admin_headers: dict, stop: asyncio.Event
) -> tuple[Counter[int], list[httpx.Response], set[int]]:
    """Uploads and device listings until ``stop``, on one keep-alive connection."""
    statuses: Counter[int] = Counter()
    unavailable: list[httpx.Response] = []
    streams: set[int] = set()
    i = 0
    while not stop.is_set():
        i += 1
        for r in (
            await http.post(f"/api/v1/devices/{device_id}/data", json=reading(i), headers=token),
            await http.get("/api/v1/devices", headers=admin_headers),
        ):
            statuses[r.status_code] += 1
            streams.add(id(r.extensions["network_stream"]))
            if r.status_code == 503:
                unavailable.append(r)
    return statuses, unavailable, streams


async def test_database_outage_answers_503_and_recovers(
    served: Served, admin, pg_admin, caplog: pytest.LogCaptureFixture
) -> None:
    conn, name = pg_admin
    device, token = await device_with_token(served.http, admin)
    faults.outages.reset()  # this test's outage window, whatever ran before
    caplog.set_level(logging.INFO)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=served.base_url, limits=limits, timeout=20) as http:
        stop = asyncio.Event()
        load = asyncio.create_task(hammer(http, device["id"], token, admin.headers, stop))
        await asyncio.sleep(0.3)
        killed = 0
        for _ in range(3):  # backends terminated under the requests
            killed += await terminate(conn, name)
            await asyncio.sleep(0.3)
        async with refusing(conn, name):  # and connections refused for a while
            await asyncio.sleep(2.5)
        await asyncio.sleep(0.5)
        stop.set()
        statuses, unavailable, streams = await load
        assert killed >= 3
        assert statuses[500] == 0, statuses
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[503] >= 2, statuses  # the outage was seen...
        assert streams and len(streams) == 1  # ...on the one connection, never closed
        for r in unavailable[:5]:
            body = problem(r, 503)
            assert int(r.headers["Retry-After"]) > 0
            assert "unavailable" in body["detail"]
        # Recovered without a restart.
        r = await http.get("/api/v1/devices", headers=admin.headers)
        assert r.status_code == 200
        r = await http.post(f"/api/v1/devices/{device['id']}/data", json=reading(0), headers=token)
        assert r.status_code == 200, r.text
    outage_lines = [r for r in caplog.records if r.name == "fieldwatch.db"]
    assert len(outage_lines) == 1, [r.getMessage() for r in outage_lines]
    assert outage_lines[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.exc_info], "no traceback for an outage"
    assert not [r for r in caplog.records if "another operation" in r.getMessage()]


async def test_device_websocket_keeps_its_session_through_an_outage(
    served: Served, admin, pg_admin
) -> None:
    conn, name = pg_admin
    device = await make_device(served, admin)
    ws = await connected(served, device)
    frame = {"type": "telemetry", "metrics": {"temperature": 21.5}}
    await ws.send(json.dumps({**frame, "id": "before", "timestamp": iso(recent(9))}))
    assert (await recv(ws))["type"] == "ack"  # the session is up
    stamp = iso(recent(5))  # a resent frame is the same reading: the same timestamp
    async with refusing(conn, name):
        await ws.send(json.dumps({**frame, "id": "during", "timestamp": stamp}))
        reply = await recv(ws)
    assert reply["type"] == "error" and reply["code"] == "unavailable", reply
    assert reply["ref"] == "during" and reply["retry_after"] > 0
    # The same session goes on; the resent frame is stored once.
    for attempt in ("resent", "again"):
        await ws.send(json.dumps({**frame, "id": attempt, "timestamp": stamp}))
        reply = await recv(ws)
        assert reply["type"] == "ack", reply
    r = await served.http.get(f"/api/v1/devices/{device.id}/data", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert [x["value"] for x in r.json()["items"]] == [21.5, 21.5]
    await ws.close()


async def test_mqtt_data_held_through_an_outage_is_stored_after_it(
    client,
    peers,  # noqa: F811
    admin,
    pg_admin,
) -> None:
    conn, name = pg_admin
    device, peer = await device_peer(client, admin, peers)
    async with refusing(conn, name):
        await peer.publish(topics.data(device["id"], "temperature"), dumps({"value": 7.5}))
        await asyncio.sleep(1.0)  # the gateway retries meanwhile

    async def stored() -> Any:
        return (await latest(client, admin, device["id"])).get("temperature")

    assert (await eventually(stored, within=15))["value"] == 7.5


def test_what_counts_as_unavailable() -> None:
    import sqlite3

    assert faults.unavailable_reason(sqlite3.OperationalError("database is locked"))
    assert faults.unavailable_reason(ConnectionRefusedError(111, "refused"))
    assert faults.unavailable_reason(
        asyncpg.exceptions.ObjectNotInPrerequisiteStateError(
            'database "x" is not currently accepting connections'
        )
    )
    assert faults.unavailable_reason(asyncpg.exceptions.AdminShutdownError("terminating"))
    assert faults.unavailable_reason(sqlite3.OperationalError("no such table: x")) is None
    assert faults.unavailable_reason(ValueError("database is locked")) is None
    assert faults.unavailable_reason(asyncpg.exceptions.UniqueViolationError("dup")) is None


def test_background_tracebacks_of_an_outage_fold_into_one_warning() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(faults.FoldOutages())
    for name in ("fieldwatch.webhooks", "fieldwatch.db"):
        logging.getLogger(name).addHandler(handler)
    faults.outages.reset()
    try:
        job = logging.getLogger("fieldwatch.webhooks")
        for _ in range(5):
            try:
                raise asyncpg.exceptions.AdminShutdownError("terminating connection")
            except asyncpg.PostgresError:
                job.exception("webhook worker pass failed")
        try:
            raise ValueError("a bug")
        except ValueError:
            job.exception("webhook worker pass failed")
    finally:
        for name in ("fieldwatch.webhooks", "fieldwatch.db"):
            logging.getLogger(name).removeHandler(handler)
    outage = [r for r in records if r.name == "fieldwatch.db"]
    assert len(outage) == 1 and outage[0].levelno == logging.WARNING
    assert "webhook worker pass failed" in outage[0].getMessage()
    bugs = [r for r in records if r.name == "fieldwatch.webhooks"]
    assert len(bugs) == 1 and bugs[0].exc_info and bugs[0].exc_info[0] is ValueError
