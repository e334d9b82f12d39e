"""Test fixtures: every test runs against a real database, SQLite always and
PostgreSQL when FIELDWATCH_TEST_DATABASE_URL is set (CI requires it).

The schema is built from the Alembic migrations, never from ``create_all``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from fieldwatch.app import create_app
from fieldwatch.auth.models import LoginSession, Membership, User, Workspace
from fieldwatch.auth.passwords import hash_password_sync
from fieldwatch.auth.roles import Role
from fieldwatch.core.settings import Settings
from fieldwatch.db import migrate
from fieldwatch.db.engine import create_engine, normalize_url
from fieldwatch.runtime import Runtime, build_runtime
from fieldwatch.transports.edge import DeviceEdge
from mqtt_helpers import dynsec_plugin, mosquitto_binary

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("FIELDWATCH_TEST_DATABASE_URL")
PASSWORD = "correct-horse-battery"
JWT_SECRET = "test-secret-" + "x" * 60


def missing(message: str) -> NoReturn:
    """Something a test needs is not there: a failure in CI, else a skip."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_dynsec_mosquitto() -> None:
    """Mosquitto 2 with its dynamic-security plugin and ``mosquitto_ctrl``, or ``missing``."""
    if mosquitto_binary() is None or dynsec_plugin() is None or not shutil.which("mosquitto_ctrl"):
        missing("Mosquitto 2 with the dynamic-security plugin is not installed")


if IN_CI and not PG_URL:
    raise pytest.UsageError(
        "CI=true but FIELDWATCH_TEST_DATABASE_URL is not set: "
        "in CI the suite must run on PostgreSQL too"
    )

BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])


@dataclass
class Backend:
    name: str
    url: str  # the database the tests use
    template: Path | None = None  # SQLite: a migrated file copied for each test


async def _create_pg_database(base_url: str) -> tuple[str, str]:
    import asyncpg

    url = normalize_url(base_url)
    name = f"fieldwatch_test_{uuid.uuid4().hex[:10]}"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except Exception as exc:
        missing(f"PostgreSQL at {url.render_as_string()} is unreachable: {exc!r}")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False), dsn


async def _drop_pg_database(dsn: str, test_url: str) -> None:
    import asyncpg

    name = make_url(test_url).database
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session", params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "sqlite":
        template = tmp_path_factory.mktemp("db") / "template.db"
        engine = create_engine(f"sqlite:///{template}")
        await migrate.upgrade(engine)
        await engine.dispose()
        yield Backend("sqlite", "", template)
        return
    assert PG_URL
    test_url, admin_dsn = await _create_pg_database(PG_URL)
    engine = create_engine(test_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    try:
        yield Backend("postgres", test_url)
    finally:
        await _drop_pg_database(admin_dsn, test_url)


TABLES = [
    "refresh_tokens", "login_sessions", "api_keys", "agent_tokens", "memberships",
    "device_logs", "readings", "rollup_1m", "rollup_1h", "series", "connectivity_events",
    "device_presence", "device_type_settings", "workspace_telemetry_settings",
    "device_rate_limits", "device_type_rate_limits",
    "alerts", "alert_rules",
    "webhook_deliveries", "webhooks",
    "command_transitions", "commands", "config_versions", "device_configs",
    "provisioning_keys", "periodic_jobs",
    "devices", "users", "workspaces",
]  # fmt: skip


@pytest.fixture
async def settings(backend: Backend, tmp_path: Path) -> Settings:
    url = backend.url
    if backend.template is not None:
        db_file = tmp_path / "fieldwatch.db"
        shutil.copyfile(backend.template, db_file)
        url = f"sqlite:///{db_file}"
    return Settings(
        env="test",
        data_dir=tmp_path / "data",
        database_url=url,
        jwt_secret=JWT_SECRET,
        db_pool_size=5,
    )


@pytest.fixture
async def runtime(settings: Settings, backend: Backend) -> AsyncIterator[Runtime]:
    rt = build_runtime(settings)
    try:
        yield rt
    finally:
        await rt.stop_work()  # nothing may still write while the tables are emptied
        if backend.name == "postgres":
            async with rt.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        await rt.close()


@pytest.fixture
def app(runtime: Runtime) -> FastAPI:
    return create_app(runtime=runtime)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fieldwatch.test") as c:
        yield c


_HASH: dict[str, str] = {}


def password_hash() -> str:
    if PASSWORD not in _HASH:
        _HASH[PASSWORD] = hash_password_sync(PASSWORD)
    return _HASH[PASSWORD]


@dataclass
class Actor:
    user_id: uuid.UUID
    email: str
    workspace_id: uuid.UUID
    workspace: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Factory:
    """Makes workspaces and users straight in the database and mints their tokens
    (skipping the password login, which has its own tests)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.workspaces: dict[str, uuid.UUID] = {}

    async def workspace(self, name: str) -> uuid.UUID:
        if name not in self.workspaces:
            async with self.runtime.uow() as uow:
                ws = Workspace(name=name)
                uow.session.add(ws)
                await uow.commit()
                self.workspaces[name] = ws.id
        return self.workspaces[name]

    async def user(
        self, role: Role | str, workspace: str = "acme", email: str | None = None
    ) -> Actor:
        role = Role(role)
        ws_id = await self.workspace(workspace)
        email = email or f"{role.value}-{uuid.uuid4().hex[:6]}@{workspace}.example.com"
        async with self.runtime.uow() as uow:
            user = User(email=email, password_hash=password_hash())
            uow.session.add(user)
            await uow.session.flush()
            uow.session.add(Membership(workspace_id=ws_id, user_id=user.id, role=role))
            login = LoginSession(user_id=user.id)
            uow.session.add(login)
            await uow.commit()
        token, _ = self.runtime.codec.issue(user.id, login.id)
        return Actor(user.id, email, ws_id, workspace, role, token)

    async def join(self, actor: Actor, workspace: str, role: Role | str) -> uuid.UUID:
        ws_id = await self.workspace(workspace)
        async with self.runtime.uow() as uow:
            uow.session.add(Membership(workspace_id=ws_id, user_id=actor.user_id, role=Role(role)))
            await uow.commit()
        return ws_id


@pytest.fixture
def factory(runtime: Runtime) -> Factory:
    return Factory(runtime)


@pytest.fixture
async def admin(factory: Factory) -> Actor:
    return await factory.user("admin")


@pytest.fixture
async def operator(factory: Factory) -> Actor:
    return await factory.user("operator")


@pytest.fixture
async def viewer(factory: Factory) -> Actor:
    return await factory.user("viewer")


async def create_device(
    client: httpx.AsyncClient, who: Actor | dict[str, str], **fields: Any
) -> dict[str, Any]:
    headers = who.headers if isinstance(who, Actor) else who
    body = {"name": "Sensor", "type": "sensor", **fields}
    r = await client.post("/api/v1/devices", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``r`` is an RFC 9457 problem document with ``status`` and return it."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = dict(r.json())
    assert body["status"] == status
    assert body["title"] and body["type"] and body["detail"]
    return body


@dataclass
class Served:
    """A real uvicorn server running the production ASGI app over the test runtime."""

    http: httpx.AsyncClient
    ws_url: str
    edge: DeviceEdge  # the served app's
    realtime: Any = None  # the served app's Socket.IO server

    @property
    def base_url(self) -> str:
        return str(self.http.base_url).rstrip("/")


@contextlib.asynccontextmanager
async def serve_runtime(runtime: Runtime) -> AsyncIterator[Served]:
    """Serve ``runtime`` with a real uvicorn server on a free port until the block ends."""
    import asyncio

    import uvicorn

    from fieldwatch.app import create_asgi_app, server_options

    asgi = create_asgi_app(runtime=runtime)
    # The options of `fieldwatch serve`; log_config=None: uvicorn's records reach the
    # root logger (and caplog).
    options = {**server_options(runtime.settings), "access_log": True}
    config = uvicorn.Config(asgi, host="127.0.0.1", port=0, lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            state = asgi.fastapi_app.state
            yield Served(http, f"ws://127.0.0.1:{port}", state.edge, state.realtime)
    finally:
        # Dashboards first (a browser's long-poll would hold the graceful shutdown for up
        # to its ping interval), then the server.
        await asgi.fastapi_app.state.realtime.disconnect_all()
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    async with serve_runtime(runtime) as served:
        yield served


def wait_until_up(base: str) -> None:
    """Wait for a server started as a process to answer ``/health`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail("server did not start")


def load_test_module(relative: str) -> ModuleType:
    """Another directory's test module (``"commands/test_commands.py"``), loaded from its
    file under a name of its own, so its tests can be collected again elsewhere (test
    directories are not packages)."""
    path = Path(__file__).resolve().parent / relative
    spec = importlib.util.spec_from_file_location(f"again_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
