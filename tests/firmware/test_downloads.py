"""Firmware downloads over real HTTP from a served app: a device with its agent token,
a signed link; Range resume after a broken transfer, 416, ETag and If-Range, the cap on
downloads at once, and the hand-over to nginx."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from artifact_helpers import upload, uploaded
from conftest import Actor, Factory, Served, problem, serve_runtime
from fieldwatch.auth.tokens import load_or_create_secret
from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings
from fieldwatch.firmware.artifacts.download import agent_download_path, signed_download_url
from fieldwatch.runtime import Runtime, build_runtime
from telemetry_helpers import device_with_token

SIZE = 600_000


@dataclass
class Setup:
    artifact: dict
    data: bytes
    device: dict
    device_headers: dict[str, str]

    @property
    def path(self) -> str:
        return agent_download_path(self.artifact["id"])


async def set_up(http: httpx.AsyncClient, operator: Actor, size: int = SIZE) -> Setup:
    data = os.urandom(size)
    artifact = await uploaded(http, operator, data, filename="esp32-1.0.0.bin")
    device, headers = await device_with_token(http, operator, type="esp32")
    return Setup(artifact, data, device, headers)


@pytest.fixture
async def setup(served: Served, operator: Actor) -> Setup:
    return await set_up(served.http, operator)


def link(runtime: Runtime, setup: Setup, *, device_id: str | None = None, ago_s: int = 0) -> str:
    """A signed link's path and query (the served app's address is not public_url)."""
    url = runtime.firmware_files.signer.url(
        runtime.settings,
        uuid.UUID(setup.artifact["id"]),
        uuid.UUID(device_id or setup.device["id"]),
        utcnow() - timedelta(seconds=ago_s),
    )
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_full_download_and_head(served: Served, setup: Setup):
    r = await served.http.get(setup.path, headers=setup.device_headers)
    assert r.status_code == 200
    assert r.content == setup.data
    assert r.headers["etag"] == f'"{setup.artifact["sha256"]}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(SIZE)
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == 'attachment; filename="esp32-1.0.0.bin"'

    head = await served.http.head(setup.path, headers=setup.device_headers)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(SIZE)
    assert head.headers["etag"] == r.headers["etag"]


async def test_resume_with_range_after_a_break(served: Served, setup: Setup):
    got = bytearray()
    async with served.http.stream("GET", setup.path, headers=setup.device_headers) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_raw():
            got += chunk
            if len(got) >= SIZE // 2:
                break  # the connection drops half-way
    assert 0 < len(got) < SIZE
    start = len(got)
    headers = {**setup.device_headers, "Range": f"bytes={start}-"}
    rest = await served.http.get(setup.path, headers=headers)
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {start}-{SIZE - 1}/{SIZE}"
    assert rest.headers["content-length"] == str(SIZE - start)
    whole = bytes(got) + rest.content
    assert whole == setup.data
    assert hashlib.sha256(whole).hexdigest() == setup.artifact["sha256"]

    r = await served.http.get(setup.path, headers={**setup.device_headers, "Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == setup.data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{SIZE}"
    r = await served.http.get(setup.path, headers={**setup.device_headers, "Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == setup.data[-100:]


async def test_unsatisfiable_range(served: Served, setup: Setup):
    r = await served.http.get(
        setup.path, headers={**setup.device_headers, "Range": f"bytes={SIZE}-"}
    )
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    # A Range that cannot be read is ignored: the whole file.
    for unreadable in ("bytes=abc", "bytes=20-10", "pages=1-2"):
        headers = {**setup.device_headers, "Range": unreadable}
        r = await served.http.get(setup.path, headers=headers)
        assert r.status_code == 200 and r.content == setup.data, unreadable


async def test_etag_if_none_match_and_if_range(served: Served, setup: Setup):
    etag = f'"{setup.artifact["sha256"]}"'
    r = await served.http.get(setup.path, headers={**setup.device_headers, "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == etag
    r = await served.http.get(
        setup.path, headers={**setup.device_headers, "If-None-Match": '"something-else"'}
    )
    assert r.status_code == 200 and r.content == setup.data

    ranged = {**setup.device_headers, "Range": "bytes=100-"}
    r = await served.http.get(setup.path, headers={**ranged, "If-Range": etag})
    assert r.status_code == 206 and r.content == setup.data[100:]
    r = await served.http.get(setup.path, headers={**ranged, "If-Range": f'"{"0" * 64}"'})
    assert r.status_code == 200 and r.content == setup.data  # changed: the whole file


async def test_agent_token_rules(served: Served, runtime: Runtime, setup: Setup, factory: Factory):
    http = served.http
    problem(await http.get(setup.path), 401)
    user = await factory.user("admin")
    problem(await http.get(setup.path, headers=user.headers), 401)  # a user is no device

    stranger = await factory.user("operator", workspace="globex")
    _, foreign_headers = await device_with_token(http, stranger, type="esp32")
    problem(await http.get(setup.path, headers=foreign_headers), 404)
    problem(await http.get(agent_download_path(uuid.uuid4()), headers=setup.device_headers), 404)

    tokens = await http.get(f"/api/v1/devices/{setup.device['id']}/tokens", headers=user.headers)
    token_id = tokens.json()["items"][0]["id"]
    r = await http.delete(
        f"/api/v1/devices/{setup.device['id']}/tokens/{token_id}", headers=user.headers
    )
    assert r.status_code == 200
    problem(await http.get(setup.path, headers=setup.device_headers), 401)


async def test_signed_links(
    served: Served, runtime: Runtime, setup: Setup, factory: Factory, operator: Actor
):
    http = served.http
    r = await http.get(link(runtime, setup))
    assert r.status_code == 200 and r.content == setup.data
    r = await http.get(link(runtime, setup), headers={"Range": f"bytes={SIZE - 10}-"})
    assert r.status_code == 206 and r.content == setup.data[-10:]
    assert (await http.head(link(runtime, setup))).status_code == 200

    ttl = runtime.settings.firmware_url_ttl_s
    problem(await http.get(link(runtime, setup, ago_s=ttl + 5)), 403)  # expired
    good = link(runtime, setup)
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    problem(await http.get(tampered), 403)
    problem(await http.get(good.split("&sig=")[0] + "&sig=%C2%B9%C2%94"), 403)
    other, _ = await device_with_token(http, operator, type="esp32")
    moved = good.replace(setup.device["id"], other["id"])  # another device, same signature
    problem(await http.get(moved), 403)

    stranger = await factory.user("operator", workspace="globex")
    foreign, _ = await device_with_token(http, stranger, type="esp32")
    # Even a valid link for a device of another workspace finds nothing.
    problem(await http.get(link(runtime, setup, device_id=foreign["id"])), 404)


def test_signed_download_url_is_absolute_and_stable(runtime: Runtime):
    settings: Settings = runtime.settings.model_copy(update={"public_url": "https://fw.example/"})
    now = utcnow()
    artifact_id, device_id = uuid.uuid4(), uuid.uuid4()
    url = signed_download_url(
        settings, load_or_create_secret(settings), artifact_id, device_id, now
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://fw.example"
    assert parts.path == f"/api/v1/firmware/download/{artifact_id}"
    expected_expiry = int(now.timestamp()) + settings.firmware_url_ttl_s
    assert parts.query.startswith(f"device={device_id}&expires={expected_expiry}&sig=")
    assert url == runtime.firmware_files.signer.url(settings, artifact_id, device_id, now)
    assert "test-secret" not in url


async def stalled_download(served: Served, setup: Setup) -> asyncio.StreamWriter:
    """A download whose client reads its headers and then nothing more (a small receive
    window: the server cannot push the file into socket buffers and be done)."""
    url = urlsplit(served.base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (url.hostname, url.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    token = setup.device_headers["Authorization"]
    request = f"GET {setup.path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {token}\r\n"
    writer.write(request.encode() + b"\r\n")
    await writer.drain()
    async with asyncio.timeout(10):
        status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    return writer


async def test_download_cap_answers_503_with_retry_after(settings: Settings, operator: Actor):
    capped = settings.model_copy(
        update={"firmware_download_concurrency": 1, "firmware_download_queue_s": 0.2}
    )
    runtime = build_runtime(capped)
    try:
        async with serve_runtime(runtime) as served:
            setup = await set_up(served.http, operator, 16 * 1024 * 1024)
            gate = runtime.firmware_files.gate
            held = await stalled_download(served, setup)
            assert gate.active == 1
            busy = await served.http.get(setup.path, headers=setup.device_headers)
            assert busy.status_code == 503
            body = problem(busy, 503)
            assert busy.headers["retry-after"] == "1" and body["retry_after"] == 1
            # A HEAD sends no body and needs no slot.
            head = await served.http.head(setup.path, headers=setup.device_headers)
            assert head.status_code == 200
            metrics = (await served.http.get("/metrics")).text
            assert "fieldwatch_firmware_downloads_active 1.0" in metrics
            assert "fieldwatch_firmware_downloads_refused_total 1.0" in metrics
            assert gate.active == 1  # still held by the stalled download

            held.close()  # the client gives up: the slot is free again
            await held.wait_closed()
            r = await served.http.get(setup.path, headers=setup.device_headers)
            assert r.status_code == 200 and r.content == setup.data
            async with asyncio.timeout(10):  # its slot is given back once it has sent
                while True:
                    if gate.active == 0:
                        break
                    await asyncio.sleep(0.01)
    finally:
        await runtime.close()


async def test_accel_redirect_hands_the_bytes_to_nginx(
    served: Served, runtime: Runtime, setup: Setup
):
    runtime.settings.firmware_accel_redirect_prefix = "/_firmware/"
    sha = setup.artifact["sha256"]
    r = await served.http.get(setup.path, headers=setup.device_headers)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["x-accel-redirect"] == f"/_firmware/sha256/{sha[:2]}/{sha}"
    assert r.headers["etag"] == f'"{sha}"'
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == 'attachment; filename="esp32-1.0.0.bin"'
    # What nginx serves is the file under firmware_dir at that path.
    blob = runtime.settings.resolved_firmware_dir / f"sha256/{sha[:2]}/{sha}"
    assert blob.read_bytes() == setup.data
    # Authorisation still comes first.
    problem(await served.http.get(setup.path), 401)
    r = await served.http.get(link(runtime, setup))
    assert r.headers["x-accel-redirect"].endswith(sha)


async def test_too_large_upload_is_refused_as_it_streams(
    served: Served, runtime: Runtime, operator: Actor
):
    runtime.settings.firmware_max_upload_bytes = 2 * 1024 * 1024
    # Just over the limit (found while reading), and far over it (the declared length).
    for size in (2 * 1024 * 1024 + 1, 64 * 1024 * 1024):
        body = problem(await upload(served.http, operator, os.urandom(size)), 413)
        assert body["limit"] == 2 * 1024 * 1024
    tmp = runtime.settings.resolved_firmware_dir / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    r = await served.http.get("/api/v1/firmware/artifacts", headers=operator.headers)
    assert r.json()["total"] == 0
