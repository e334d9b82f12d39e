"""No secret in any log line, at any level: the real server, logging at DEBUG, through a
scenario that uses every kind of credential Fieldwatch issues; then the whole log is
searched for each of them. And the masking filter itself, on each secret's shape."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import socketio
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import PASSWORD, Factory
from fieldwatch.core import credentials
from fieldwatch.core.observability import CHATTY_LOGGERS, configure_logging
from fieldwatch.core.redact import MASK, RedactSecrets, redact
from fieldwatch.core.settings import Settings
from fieldwatch.transports.mqtt import topics
from fieldwatch.webhooks import signing
from mqtt_helpers import free_port

WAIT_S = 10
FAKE_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)


# --- the filter, one shape at a time -------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        (credentials.new_secret(credentials.DEVICE_TOKEN_PREFIX), "fwd_" + MASK),
        (credentials.new_secret(credentials.API_KEY_PREFIX), "fwk_" + MASK),
        (credentials.new_secret(credentials.REFRESH_TOKEN_PREFIX), "fwr_" + MASK),
        (credentials.new_secret("fwp_"), "fwp_" + MASK),
        (FAKE_JWT, "eyJ" + MASK),
    ],
    ids=["device-token", "api-key", "refresh-token", "provisioning-key", "jwt"],
)
def test_each_issued_credential_is_masked_by_its_shape(secret: str, shown: str) -> None:
    for line in (
        f"WebSocket /ws/device/{secret} 403",
        f"WebSocket /ws/device//{secret} 403",
        f"WebSocket /ws/device?token={secret}&x=1 403",
        f"< authorization: Bearer {secret}",
        f'> TEXT \'40{{"token":"{secret}"}}\' [50 bytes]',
        f"refused {secret[:-1]}",  # a mistyped credential is almost the real one
        f"{secret},{secret}",
    ):
        masked = redact(line)
        assert secret[4:12] not in masked, masked
        assert shown in masked, masked
    if secret.startswith("fw"):  # the display prefix the API lists keys by stays
        assert redact(f"key {secret[:12]} revoked") == f"key {secret[:12]} revoked"


@pytest.mark.parametrize(
    ("line", "secret", "kept"),
    [
        ("postgresql://fw:s3cr%40t@db:5432/fw", "s3cr%40t", "postgresql://fw:***@db:5432/fw"),
        ("broker mqtt://svc:pa55word@10.0.0.1:1883 down", "pa55word", "mqtt://svc:***@10.0.0.1"),
        ("amqp://guest:guest@127.0.0.1:5672/", "guest@", "amqp://guest:***@127.0.0.1"),
        ("redis://:hunter22@cache:6379/0", "hunter22", "redis://:***@cache"),
        ('{"email": "a@b.c", "password": "hunter2 x"}', "hunter2", '"email": "a@b.c"'),
        ("{'current_password': 'p1', 'new_password': 'p2'}", "'p1'", "'current_password': "),
        ("ConnectPayload(username=svc, password=Zq9-xx_yy)", "Zq9-xx_yy", "username=svc"),
        ('{"secret": "' + signing.new_secret() + '"}', "", '"secret": "***"'),
        ("< Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("< authorization: opaque-value-123", "opaque-value-123", "authorization: ***"),
        ("< Cookie: session=abc123", "abc123", "Cookie: ***"),
    ],
    ids=[
        "postgres-url",
        "mqtt-url",
        "amqp-url",
        "redis-url",
        "json-password",
        "repr-passwords",
        "connect-payload",
        "webhook-secret",
        "basic-auth",
        "authorization",
        "cookie",
    ],
)
def test_passwords_headers_and_named_secrets_are_masked(line: str, secret: str, kept: str) -> None:
    masked = redact(line)
    if secret:
        assert secret not in masked, masked
    assert kept in masked, masked


def test_ordinary_lines_are_left_alone() -> None:
    for line in (
        "GET /api/v1/devices/5f0c1e8a-1b2c-4d5e-8f90-123456789abc 200 3.1ms",
        "device 5f0c1e8a-1b2c-4d5e-8f90-123456789abc connected over WebSocket",
        "Fieldwatch on http://127.0.0.1:8000  (API docs: http://127.0.0.1:8000/docs)",
        "MQTT: telemetry/dev-1/data refused: reading 3: value must be a number",
        "token_id=7 revoked; key prefix fwk_AbCdEfGh",
    ):
        assert redact(line) == line


def _record(msg: Any, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("third.party", logging.DEBUG, __file__, 1, msg, args, exc_info)
    record.detail = f"token {args[0] if args else ''}"  # an ``extra`` field
    return record


def test_the_filter_masks_formatted_messages_extras_and_tracebacks() -> None:
    token = credentials.new_secret(credentials.DEVICE_TOKEN_PREFIX)
    record = _record("< GET /ws/device/%s HTTP/1.1 (%d)", token, 7)
    assert RedactSecrets().filter(record) is True
    assert record.getMessage() == "< GET /ws/device/fwd_*** HTTP/1.1 (7)"
    assert token not in str(record.detail)
    try:
        raise ValueError(f"cannot use {token}")
    except ValueError as error:
        failed = _record("handshake failed", exc=error)
    RedactSecrets().filter(failed)
    assert failed.exc_text and "cannot use fwd_***" in failed.exc_text
    assert token not in logging.Formatter().format(failed)
    # Non-string messages (an exception, a dict) are formatted first, then masked.
    odd = _record({"token": token})
    RedactSecrets().filter(odd)
    assert token not in odd.getMessage()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_configure_logging_masks_every_handler_and_quiets_frame_loggers(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in [*CHATTY_LOGGERS, "alembic"]}
    access_disabled = logging.getLogger("uvicorn.access").disabled
    token = credentials.new_secret(credentials.API_KEY_PREFIX)
    try:
        configure_logging("DEBUG", fmt)
        assert all(any(isinstance(f, RedactSecrets) for f in h.filters) for h in root.handlers)
        logging.getLogger("fieldwatch.test").debug("using %s", token, extra={"key": token})
        logging.getLogger("uvicorn.error").info('"WebSocket /ws/device//%s" 403', token)
        for chatty in ("websockets.server", "engineio.server", "socketio.server", "amqtt"):
            logging.getLogger(chatty).debug("frame %s", "chatty-frame")
        logging.getLogger("sqlalchemy.engine.Engine").info("INSERT [parameters] chatty-sql")
    finally:  # as it was, for the other tests
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger("uvicorn.access").disabled = access_disabled
    out = stream.getvalue()
    assert token not in out and token[4:12] not in out
    assert out.count("fwk_" + MASK) == (3 if fmt == "json" else 2)
    assert "chatty-frame" not in out and "chatty-sql" not in out


# --- the real server, a whole scenario, at DEBUG -------------------------------------------


@dataclass
class Server:
    base: str
    ws_url: str
    listener_url: str
    mqtt_port: int
    log: Path
    process: subprocess.Popen[bytes]
    secrets: dict[str, str] = field(default_factory=dict)

    def used(self, name: str, value: str) -> str:
        assert len(value) >= 8, (name, value)
        self.secrets[name] = value
        return value


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited:\n{server.log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.base}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"the server did not start:\n{server.log.read_text()}")


def _database_url(settings: Settings) -> tuple[str, str | None]:
    """The test database, with a password in its URL where the server would use one
    (PostgreSQL on loopback trusts the connection and ignores it)."""
    url = make_url(settings.database_url or "")
    if url.get_backend_name() != "postgresql":
        return str(settings.database_url), None
    password = "pg-" + credentials.generate_password()
    return url.set(password=password).render_as_string(hide_password=False), password


@contextlib.contextmanager
def _serving(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[Server]:
    """``fieldwatch serve`` at DEBUG on free ports, its output in a file, until the end."""
    port, listener, mqtt_port = free_port(), free_port(), free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    full_env.update(
        FIELDWATCH_DATA_DIR=str(tmp_path / "server"),
        FIELDWATCH_LOG_LEVEL="DEBUG",
        FIELDWATCH_MQTT_PORT=str(mqtt_port),
        FIELDWATCH_DEVICE_WS_PORT=str(listener),
        **env,
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fieldwatch", "serve", "--port", str(port), *args],
            env=full_env,
            stdout=subprocess.DEVNULL,  # the command's own output; the log is stderr
            stderr=out,
        )
    running = Server(
        f"http://127.0.0.1:{port}",
        f"ws://127.0.0.1:{port}",
        f"ws://127.0.0.1:{listener}",
        mqtt_port,
        log,
        process,
    )
    try:
        _wait_until_up(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[Server]:
    database_url, db_password = _database_url(settings)
    env = {
        "FIELDWATCH_DATABASE_URL": database_url,
        "FIELDWATCH_JWT_SECRET": str(settings.jwt_secret),
    }
    with _serving(tmp_path, env) as running:
        if db_password:
            running.used("database password", db_password)
        running.used("JWT signing key", str(settings.jwt_secret))
        yield running


async def _people(server: Server, http: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Password login, refresh, password change, an API key: the headers of each."""
    server.used("password", PASSWORD)
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    first = r.json()
    server.used("access token", first["access_token"])
    server.used("refresh token", first["refresh_token"])
    r = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    pair = r.json()
    access = server.used("refreshed access token", pair["access_token"])
    server.used("second refresh token", pair["refresh_token"])
    r = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401  # reuse of a rotated refresh token: logged as a warning
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    admin = {"Authorization": f"Bearer {server.used('access token 3', r.json()['access_token'])}"}
    new_password = server.used("new password", "n3w-" + credentials.generate_password())
    r = await http.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=admin,
    )
    assert r.status_code == 204, r.text
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": new_password})
    assert r.status_code == 200, r.text
    admin = {"Authorization": f"Bearer {server.used('access token 4', r.json()['access_token'])}"}
    bad = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert bad.status_code == 401  # the password change ended the other logins
    r = await http.post("/api/v1/api-keys", json={"name": "ci", "role": "admin"}, headers=admin)
    assert r.status_code == 201, r.text
    key = server.used("API key", r.json()["key"])
    r = await http.get("/api/v1/devices", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    r = await http.post(
        "/api/v1/webhooks", json={"url": "https://93.184.215.14/hook"}, headers=admin
    )
    assert r.status_code == 201, r.text
    server.used("webhook secret", r.json()["secret"])
    return {"admin": admin["Authorization"], "key": f"Bearer {key}"}


async def _devices(server: Server, http: httpx.AsyncClient, admin: dict[str, str]) -> str:
    """A device with a token, and one that provisions itself with a provisioning key."""
    r = await http.post("/api/v1/devices", json={"name": "meter", "type": "meter"}, headers=admin)
    assert r.status_code == 201, r.text
    device_id = r.json()["id"]
    r = await http.post(f"/api/v1/devices/{device_id}/tokens", headers=admin)
    token = server.used("device token", r.json()["token"])
    r = await http.get("/api/v1/device/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    r = await http.post("/api/v1/provisioning-keys", json={"name": "factory"}, headers=admin)
    assert r.status_code == 201, r.text
    key = server.used("provisioning key", r.json()["key"])
    r = await http.post(
        "/api/v1/provision",
        json={"serial_number": "SN-0001", "name": "pump", "type": "pump"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201, r.text
    server.used("provisioned device token", r.json()["auth_token"])
    return device_id


async def _device_sockets(server: Server) -> None:
    """Good and refused handshakes on the API's port and on the device port."""
    token = server.secrets["device token"]
    bearer = {"Authorization": f"Bearer {token}"}
    for base in (server.ws_url, server.listener_url):
        for url, headers in ((f"{base}/ws/device/{token}", {}), (f"{base}/ws/device", bearer)):
            async with connect(url, additional_headers=headers, open_timeout=WAIT_S) as ws:
                async with asyncio.timeout(WAIT_S):
                    assert json.loads(await ws.recv())["type"] == "welcome"
                    await ws.send(json.dumps({"type": "heartbeat", "id": "h1"}))
                    assert json.loads(await ws.recv())["type"] == "ack"
        for url, headers in (
            (f"{base}/ws/device//{token}", {}),
            (f"{base}/ws/device?token={token}", {}),
            (f"{base}/ws/device/{token}x", {}),
            (f"{base}/ws/device", {"Authorization": f"Bearer {token}x"}),
        ):
            with pytest.raises(InvalidStatus):
                await connect(url, additional_headers=headers, open_timeout=WAIT_S)


async def _dashboards(server: Server, auth: dict[str, str]) -> None:
    """Socket.IO: a token in the login frame, one in a header, and a refused device token."""
    for how in (
        {"auth": {"token": auth["admin"].split()[1]}},
        {"headers": {"Authorization": auth["key"]}},
    ):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            server.base, socketio_path="/ws/monitoring", transports=["websocket"],
            wait_timeout=WAIT_S, **how,
        )  # fmt: skip
        await client.emit("subscribe", {"devices": None})
        await client.disconnect()
    refused = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(
            server.base, socketio_path="/ws/monitoring", transports=["websocket"],
            auth={"token": server.secrets["device token"]}, wait_timeout=WAIT_S,
        )  # fmt: skip


def _mqtt_login(port: int, username: str, password: str, client_id: str = "") -> int:
    """Connect, then disconnect; the CONNACK's reason code."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(username, password)
    done = threading.Event()
    codes: list[int] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        codes.append(reason.value)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        assert done.wait(WAIT_S), "no CONNACK"
        if codes[0] == 0 and username not in ("provision", "control"):
            info = client.publish(topics.heartbeat(username), b"{}", qos=1)
            info.wait_for_publish(WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


async def _mqtt(server: Server, device_id: str) -> None:
    token = server.secrets["device token"]
    key = server.secrets["provisioning key"]
    login = asyncio.to_thread
    assert await login(_mqtt_login, server.mqtt_port, device_id, token) == 0
    assert await login(_mqtt_login, server.mqtt_port, device_id, token + "x") != 0
    assert await login(_mqtt_login, server.mqtt_port, "provision", key, "SN-0002") == 0
    assert await login(_mqtt_login, server.mqtt_port, "control", server.secrets["API key"]) == 0


async def test_a_debug_log_of_a_whole_scenario_holds_no_secret(
    server: Server, factory: Factory
) -> None:
    admin = await factory.user("admin", "acme")
    async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
        auth = await _people(server, http, admin.email)
        device_id = await _devices(server, http, {"Authorization": auth["admin"]})
        await _device_sockets(server)
        await _dashboards(server, auth)
        await _mqtt(server, device_id)
        assert (await http.get("/health")).status_code == 200
    await asyncio.sleep(0.3)  # the last lines reach the log
    server.process.terminate()
    await asyncio.to_thread(server.process.wait, 15)

    log = server.log.read_text(errors="replace")
    leaked = {
        name: value
        for name, value in server.secrets.items()
        if value in log or (len(value) > 24 and value[8:24] in log)
    }
    assert not leaked, f"secrets in the log: {sorted(leaked)}"
    assert " DEBUG " in log  # the scenario really ran at DEBUG
    # The refused handshakes were logged, masked, the kind of credential left visible.
    assert '"WebSocket /ws/device//fwd_***" 403' in log
    assert '"WebSocket /ws/device?token=fwd_***" 403' in log


async def test_every_worker_process_logs_and_masks(tmp_path: Path) -> None:
    """``serve --workers``: each worker is a fresh interpreter; it must set up (masked)
    logging itself, or its records are lost, and its warnings written unmasked."""
    token = credentials.new_secret(credentials.DEVICE_TOKEN_PREFIX)
    env = {"FIELDWATCH_MQTT_EMBEDDED": "false"}
    with _serving(tmp_path, env, "--init", "--workers", "2") as server:
        for url in (f"{server.ws_url}/ws/device//{token}", f"{server.ws_url}/ws/device"):
            with pytest.raises(InvalidStatus):
                await connect(
                    url, additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=WAIT_S,
                )  # fmt: skip
        await asyncio.sleep(0.3)
    log = server.log.read_text(errors="replace")
    assert log.count("Application startup complete") == 2, log  # both workers log
    assert "fieldwatch.access: GET /health 200" in log
    assert '"WebSocket /ws/device//fwd_***" 403' in log
    assert token not in log and token[12:] not in log
