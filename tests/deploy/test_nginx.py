"""The shipped nginx configuration (``deploy/nginx/``): ``nginx -t`` passes on it, and a
real nginx started from it in front of a real Fieldwatch server proxies the API, the
health endpoints, device WebSockets (a server restart reaches them as 1012), Socket.IO,
uploads within their limits and firmware downloads sent by nginx through
X-Accel-Redirect, with no secret in its access log. Needs Debian's nginx (``apt-get
install nginx-light``): skipped without it, failed in CI."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import socketio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from artifact_helpers import uploaded
from conftest import Actor, Served, missing, serve_runtime
from fieldwatch.core.settings import Settings
from fieldwatch.runtime import Runtime
from nginx_helpers import NGINX_DIR, UPSTREAMS, Nginx, nginx_binary
from telemetry_helpers import iso
from ws_helpers import WAIT_S, Device, closed_with, make_device, recv

FIRMWARE = os.urandom(300_000)


@pytest.fixture(autouse=True)
def _nginx_installed() -> None:
    if nginx_binary() is None:
        missing("nginx is not installed (apt-get install nginx-light)")


@pytest.fixture
def settings(settings: Settings) -> Iterator[Settings]:
    """Firmware in a directory nginx's workers may read, downloads handed to nginx."""
    firmware = Path(tempfile.mkdtemp(prefix="fw-firmware-"))
    firmware.chmod(0o755)
    settings.firmware_dir = firmware
    settings.firmware_accel_redirect_prefix = "/_firmware/"
    yield settings
    shutil.rmtree(firmware, ignore_errors=True)


async def logged(nginx: Nginx, *lines: str) -> str:
    """nginx's access log once it has every one of ``lines`` (a WebSocket's line is
    written when the connection has closed)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            text = nginx.access_log.read_text() if nginx.access_log.exists() else ""
            if all(line in text for line in lines):
                return text
            await asyncio.sleep(0.05)


def loopback(port: int) -> dict[str, list[str]]:
    return {name: [f"127.0.0.1:{port}"] for name in UPSTREAMS}


def port_of(served: Served) -> int:
    return int(served.base_url.rsplit(":", 1)[1])


@pytest.fixture
async def proxied(served: Served, settings: Settings) -> AsyncIterator[tuple[Served, Nginx]]:
    nginx = Nginx(firmware_dir=settings.resolved_firmware_dir, upstreams=loopback(port_of(served)))
    with nginx:
        yield served, nginx


def test_nginx_t_passes_on_the_shipped_configuration(tmp_path: Path) -> None:
    nginx = Nginx(firmware_dir=tmp_path, upstreams=loopback(8000))
    try:
        done = nginx.check()
    finally:
        nginx.stop()
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_nginx_t_passes_with_the_compose_upstreams(tmp_path: Path) -> None:
    """The compose file's upstreams name Docker services (``api``, ``gateway``), which do
    not resolve here: the same file, with those names on the loopback address."""
    text = (NGINX_DIR / "upstreams.compose.conf").read_text()
    assert "server api:8000" in text and "server gateway:8000" in text
    local = text.replace("server api:", "server 127.0.0.1:").replace(
        "server gateway:", "server 127.0.0.1:"
    )
    nginx = Nginx(firmware_dir=tmp_path, upstreams_text=local)
    try:
        done = nginx.check()
    finally:
        nginx.stop()
    assert done.returncode == 0, done.stderr


def test_a_broken_configuration_fails_nginx_t(tmp_path: Path) -> None:
    """The check can fail: an upstream missing from the upstreams file."""
    nginx = Nginx(
        firmware_dir=tmp_path, upstreams_text="upstream fieldwatch_api { server 127.0.0.1:1; }\n"
    )
    try:
        done = nginx.check()
    finally:
        nginx.stop()
    assert done.returncode != 0
    assert "no upstream" in done.stderr or "host not found" in done.stderr, done.stderr


async def test_health_api_and_size_limits_through_nginx(proxied, admin: Actor) -> None:
    _served, nginx = proxied
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as http:
        live = await http.get("/health/live")
        assert live.status_code == 200 and live.json()["status"] == "ok"
        ready = await http.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"]["status"] == "ok"
        assert "server" not in live.headers or "nginx/" not in live.headers["server"]
        me = await http.get("/api/v1/auth/me", headers=admin.headers)
        assert me.status_code == 200, me.text
        request_id = me.headers["x-request-id"]
        # A body over the general limit (21 MiB) never reaches Fieldwatch.
        big = b"x" * (22 * 1024 * 1024)
        r = await http.post("/api/v1/devices/import", content=big, headers=admin.headers)
        assert r.status_code == 413 and "nginx" in r.text
        # Under it, Fieldwatch's own rules answer (a problem document).
        r = await http.post(
            "/api/v1/devices/import",
            content=b"x" * 1024,
            headers={**admin.headers, "Content-Type": "text/csv"},
        )
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
    # The request id nginx made (and logged) is the one Fieldwatch used and answered with.
    assert f" {request_id}\n" in nginx.access_log.read_text()


async def test_device_websocket_through_nginx(proxied, admin: Actor) -> None:
    served, nginx = proxied
    device = await make_device(served, admin)
    ws_url = nginx.url.replace("http://", "ws://")
    for how in ("header", "path"):
        if how == "header":
            ws = await connect(f"{ws_url}/ws/device", additional_headers=device.headers)
        else:
            ws = await connect(f"{ws_url}/ws/device/{device.token}", open_timeout=WAIT_S)
        async with ws:
            assert (await recv(ws))["type"] == "welcome"
            frame = {
                "type": "telemetry",
                "id": f"t-{how}",
                "metrics": {"temperature": 21.5},
                "timestamp": iso(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)),
            }
            await ws.send(json.dumps(frame))
            ack = await recv(ws)
            assert ack["type"] == "ack" and ack["ref"] == f"t-{how}", ack
            assert ack["accepted"] + ack["duplicates"] == 1
    # The token in the path is in no log line of nginx's.
    log = await logged(nginx, '"GET /ws/device HTTP/1.1" 101', '"GET /ws/device/*** HTTP/1.1" 101')
    assert device.token not in log


async def test_a_device_behind_nginx_gets_1012_when_its_server_stops(
    runtime: Runtime, settings: Settings, admin: Actor
) -> None:
    """A device connected through nginx, quiet for a moment; then its server stops (a
    restart, a pod going away): the close code that reaches the device through nginx is
    the server's restart code, 1012, which tells it to reconnect."""
    nginx: Nginx | None = None
    try:
        async with serve_runtime(runtime) as served:
            device = await make_device(served, admin)
            nginx = Nginx(
                firmware_dir=settings.resolved_firmware_dir, upstreams=loopback(port_of(served))
            ).start()
            ws = await connect(
                nginx.url.replace("http://", "ws://") + "/ws/device",
                additional_headers=device.headers,
            )
            assert (await recv(ws))["type"] == "welcome"
            await asyncio.sleep(2)
            await ws.ping()
            stopping = asyncio.create_task(closed_with(ws))
            await asyncio.sleep(0.1)
            assert not stopping.done()
        # The server has stopped; nginx runs on.
        code, _reason = await stopping
    finally:
        if nginx is not None:
            nginx.stop()
    assert code == 1012


class Dashboard:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.telemetry: asyncio.Queue[dict] = asyncio.Queue()
        self.sio.on("telemetry", self.telemetry.put)


async def test_socketio_polling_and_websocket_through_nginx(proxied, admin: Actor) -> None:
    served, nginx = proxied
    device = await make_device(served, admin)
    dashboards = [Dashboard(), Dashboard()]
    try:
        for dashboard, transports in zip(dashboards, (["polling"], ["websocket"]), strict=True):
            await dashboard.sio.connect(
                nginx.url,
                auth={"token": admin.token},
                socketio_path="ws/monitoring",
                transports=transports,
                wait_timeout=10,
            )
        body = {
            "data_type": "temperature",
            "values": [{"timestamp": iso(dt.datetime.now(dt.UTC)), "value": 19.5}],
        }
        async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
            r = await http.post(
                f"/api/v1/devices/{device.id}/data", json=body, headers=device.headers
            )
        assert r.status_code == 200, r.text
        for dashboard in dashboards:
            async with asyncio.timeout(WAIT_S):
                while True:
                    message = await dashboard.telemetry.get()
                    if message["device_id"] == device.id:
                        break
            assert message["metrics"]["temperature"]["value"] == 19.5
        assert [d.sio.transport() for d in dashboards] == ["polling", "websocket"]
    finally:
        for dashboard in dashboards:
            if dashboard.sio.connected and dashboard.sio.transport() == "polling":
                await served.realtime.drop(dashboard.sio.get_sid())
            await dashboard.sio.disconnect()


async def test_firmware_upload_and_download_through_x_accel_redirect(
    proxied, runtime: Runtime, admin: Actor
) -> None:
    served, nginx = proxied
    device: Device = await make_device(served, admin)
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as http:
        # A firmware upload larger than the general body limit goes through its location.
        big = os.urandom(22 * 1024 * 1024)
        artifact = await uploaded(http, admin, big, version="2.0.0")
        assert artifact["sha256"] == hashlib.sha256(big).hexdigest()
        artifact = await uploaded(http, admin, FIRMWARE, version="1.0.0")
        sha = artifact["sha256"]
        blob = runtime.settings.resolved_firmware_dir / f"sha256/{sha[:2]}/{sha}"
        assert blob.is_file()
        assert blob.stat().st_mode & 0o777 == 0o644  # nginx's workers are another user
        path = f"/api/v1/device/firmware/artifacts/{artifact['id']}"

        # Fieldwatch itself answers with an empty body naming the file ...
        direct = await served.http.get(path, headers=device.headers)
        assert direct.content == b"" and direct.headers["x-accel-redirect"].endswith(sha)
        # ... and nginx sends the file (its workers run as another user than the server).
        r = await http.get(path, headers=device.headers)
        assert r.status_code == 200, r.text
        assert r.content == FIRMWARE
        assert "x-accel-redirect" not in r.headers
        assert r.headers["content-disposition"].startswith("attachment")
        # A resumed download: the rest from an offset.
        r = await http.get(path, headers={**device.headers, "Range": "bytes=1000-"})
        assert r.status_code == 206 and r.content == FIRMWARE[1000:]
        assert r.headers["content-range"] == f"bytes 1000-{len(FIRMWARE) - 1}/{len(FIRMWARE)}"
        # The device's agent resumes with If-Range naming the ETag Fieldwatch gave it.
        resume = {**device.headers, "Range": "bytes=1000-", "If-Range": f'"{sha}"'}
        r = await http.get(path, headers=resume)
        assert r.status_code == 206 and r.content == FIRMWARE[1000:], r.headers
        # Authorisation still comes first, and the file is not reachable by its own path.
        assert (await http.get(path)).status_code == 401
        assert (await http.get(f"/_firmware/sha256/{sha[:2]}/{sha}")).status_code == 404

        # A signed link works the same; its signature is not in nginx's log.
        link = runtime.firmware_files.signer.url(
            runtime.settings,
            uuid.UUID(artifact["id"]),
            uuid.UUID(device.id),
            dt.datetime.now(dt.UTC),
        )
        parts = urlsplit(link)
        relative = f"{parts.path}?{parts.query}"
        r = await http.get(relative)
        assert r.status_code == 200 and r.content == FIRMWARE
    sig = relative.rsplit("sig=", 1)[1]
    log = nginx.access_log.read_text()
    assert f'"GET /api/v1/firmware/download/{artifact["id"]} HTTP/1.1" 200' in log
    assert f'"GET {path} HTTP/1.1" 206' in log  # the original path, not the file's
    assert sig not in log


def self_signed(tmp: Path) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_tls_termination_with_the_shipped_tls_conf(
    proxied, settings: Settings, tmp_path: Path
) -> None:
    """deploy/nginx/tls.conf, with this test's port and certificate paths, turns on HTTPS
    and WSS in front of the same server."""
    served, _plain = proxied
    from nginx_helpers import free_port

    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    shipped = (NGINX_DIR / "tls.conf").read_text()
    assert "listen 443 ssl;" in shipped
    nginx: Nginx | None = None
    holder = Nginx(firmware_dir=settings.resolved_firmware_dir, upstreams=loopback(port_of(served)))
    tls_dir = holder.dir / "tls"
    text = shipped.replace("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;").replace(
        "/etc/nginx/fieldwatch-tls/", f"{tls_dir}/"
    )
    (tls_dir / "tls.conf").write_text(text)
    (tls_dir / "fullchain.pem").write_bytes(cert)
    (tls_dir / "privkey.pem").write_bytes(key)
    nginx = holder.start()
    try:
        async with httpx.AsyncClient(verify=False, timeout=10) as http:  # noqa: S501 (self-signed)
            r = await http.get(f"https://127.0.0.1:{tls_port}/health/live")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert r.http_version == "HTTP/1.1"
    finally:
        nginx.stop()
