"""A route that takes ``WriteUow`` has its change committed before its answer is sent,
and commits nothing when it fails.

The app is driven as a server drives it (a raw ASGI call): at the moment the response
starts, a second database connection looks for the row the route wrote.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import text

from conftest import Actor
from fieldwatch.auth.models import Workspace
from fieldwatch.core.errors import Conflict
from fieldwatch.core.events import Event
from fieldwatch.core.settings import Settings
from fieldwatch.db.dependencies import WriteUow, committing_uow
from fieldwatch.db.engine import create_engine
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.events import DEVICE_CREATED
from fieldwatch.runtime import Runtime

Probe = Callable[[], Awaitable[Any]]
#: The same committing dependency left in the default (request) scope: it commits only
#: after the response has been sent. The control for the probe.
CommitsLate = Annotated[UnitOfWork, Depends(committing_uow, scope="request")]


async def call(
    app: FastAPI, method: str, path: str, body: Any, headers: dict[str, str], probe: Probe
) -> tuple[int, Any, Any]:
    """Call the app once; ``probe`` runs when the response starts. Returns the status,
    what the probe saw then, and the JSON body."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("test", 1),
        "headers": [
            (b"host", b"test"), (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
    }  # fmt: skip
    sent = False
    seen: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
            seen["probe"] = await probe()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return seen["status"], seen["probe"], json.loads(b"".join(chunks) or b"null")


@pytest.fixture
async def elsewhere(settings: Settings):
    """Count rows over a connection of its own (another engine: another connection)."""
    engine = create_engine(settings.resolved_database_url)

    async def count(sql: str, **params: Any) -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql), params)).scalar_one())

    yield count
    await engine.dispose()


async def test_a_write_is_committed_before_the_response_starts(
    app: FastAPI, admin: Actor, runtime: Runtime, elsewhere
) -> None:
    name = f"committed-{uuid.uuid4().hex[:8]}"
    published: list[Event] = []

    async def record(event: Event) -> None:
        published.append(event)

    runtime.bus.subscribe(DEVICE_CREATED, record)

    async def probe() -> tuple[int, int]:
        rows = await elsewhere("SELECT count(*) FROM devices WHERE name = :n", n=name)
        return rows, len(published)

    status, (rows, events), body = await call(
        app, "POST", "/api/v1/devices", {"name": name, "type": "sensor"}, admin.headers, probe
    )
    assert status == 201 and body["name"] == name
    assert rows == 1  # stored before the client could read the answer
    assert events == 1  # and its event published after the commit, before the answer


def _routes_for_the_test(app: FastAPI) -> None:
    async def commits_late(body: dict[str, str], uow: CommitsLate) -> dict[str, str]:
        uow.session.add(Workspace(name=body["name"]))
        await uow.session.flush()
        return body

    async def fails(body: dict[str, str], uow: WriteUow) -> dict[str, str]:
        uow.session.add(Workspace(name=body["name"]))
        await uow.session.flush()
        uow.emit(Event(type="test.failed_write", workspace_id=uuid.uuid4(), payload={}))
        raise Conflict("Refused after writing.")

    app.add_api_route("/test/commits-late", commits_late, methods=["POST"])
    app.add_api_route("/test/fails", fails, methods=["POST"])


async def test_the_probe_sees_a_commit_made_after_the_response(app: FastAPI, elsewhere) -> None:
    """The probe can tell: a commit left to the end of the request (the request scope of
    a dependency) is not there when the response starts, and is there afterwards."""
    _routes_for_the_test(app)
    name = f"late-{uuid.uuid4().hex[:8]}"
    sql = "SELECT count(*) FROM workspaces WHERE name = :n"

    async def probe() -> int:
        return await elsewhere(sql, n=name)

    status, rows, _ = await call(app, "POST", "/test/commits-late", {"name": name}, {}, probe)
    assert status == 200
    assert rows == 0
    assert await elsewhere(sql, n=name) == 1


async def test_a_failing_write_route_commits_nothing(
    app: FastAPI, runtime: Runtime, elsewhere
) -> None:
    _routes_for_the_test(app)
    name = f"failed-{uuid.uuid4().hex[:8]}"
    sql = "SELECT count(*) FROM workspaces WHERE name = :n"
    published: list[Event] = []

    async def record(event: Event) -> None:
        published.append(event)

    runtime.bus.subscribe("test.*", record)

    async def probe() -> int:
        return await elsewhere(sql, n=name)

    status, rows, body = await call(app, "POST", "/test/fails", {"name": name}, {}, probe)
    assert status == 409 and body["detail"] == "Refused after writing."
    assert rows == 0
    assert await elsewhere(sql, n=name) == 0  # rolled back, not left for later
    assert published == []  # and its event dropped
