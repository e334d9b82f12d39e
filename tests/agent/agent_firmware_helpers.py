"""A small HTTP server serving one firmware image the way Fieldwatch's download
endpoints do (Range, If-Range, ETag, 416, 503), which can drop the connection mid-body
and records what each request asked for; and signed update messages."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fieldwatch.agent.firmware import canonical_manifest


@dataclass
class ImageServer:
    image: bytes
    #: Drop the connection after this many body bytes, once per entry (first request first).
    drops: list[int] = field(default_factory=list)
    busy: int = 0  # answer this many requests with 503 first
    requests: list[dict[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self.image).hexdigest()}"'

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ImageServer:
        app = web.Application()
        app.router.add_get("/image", self._get)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def range_starts(self) -> list[int | None]:
        """The start of each request's Range header (None: no Range)."""
        starts: list[int | None] = []
        for headers in self.requests:
            value = headers.get("Range")
            starts.append(int(value.removeprefix("bytes=").split("-")[0]) if value else None)
        return starts

    async def _get(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        if self.busy:
            self.busy -= 1
            return web.Response(status=503, headers={"Retry-After": "0"})
        total, start = len(self.image), 0
        wanted = request.headers.get("Range")
        if wanted and request.headers.get("If-Range", self.etag) == self.etag:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= total:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
        body = self.image[start:]
        headers = {"ETag": self.etag, "Accept-Ranges": "bytes", "Content-Length": str(len(body))}
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if self.drops:
            cut = self.drops.pop(0)
            await response.write(body[:cut])
            assert request.transport is not None
            request.transport.close()  # the connection drops mid-body
            return response
        await response.write(body)
        await response.write_eof()
        return response


def signing_key() -> tuple[Ed25519PrivateKey, bytes, str]:
    """A private key, its raw public key and the key's fingerprint."""
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private, raw, hashlib.sha256(raw).hexdigest()


def update_message(
    image: bytes, url: str, *, version: str = "1.5.0", key: Ed25519PrivateKey | None = None
) -> dict[str, Any]:
    """An update message as the contract describes it, signed with ``key`` if given."""
    sha = hashlib.sha256(image).hexdigest()
    manifest = {"sha256": sha, "size": len(image), "version": version, "device_types": ["esp32"],
                "hardware_versions": [], "security_version": 1}  # fmt: skip
    signature = fingerprint = None
    if key is not None:
        signature = base64.b64encode(key.sign(canonical_manifest(manifest))).decode()
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        fingerprint = hashlib.sha256(raw).hexdigest()
    update_id = str(uuid.uuid4())
    return {
        "update_id": update_id, "command_id": update_id, "version": version, "url": url,
        "download_path": "/image", "checksum": sha, "sha256": sha, "size": len(image),
        "signature": signature, "signing_key": fingerprint, "manifest": manifest, "attempt": 1,
        "timestamp": "2026-12-03T10:00:00+00:00", "expires_at": "2026-12-04T10:00:00+00:00",
    }  # fmt: skip


class FakeFieldwatch:
    """A WebSocket endpoint like /ws/device: a welcome, an ack for every frame with an id,
    and one firmware_update frame (sent twice) once the device said which version it runs."""

    def __init__(self, update: dict[str, Any]) -> None:
        self.update = update
        self.frames: list[list[dict[str, Any]]] = []  # per connection
        self.server: Any = None
        self.back = asyncio.Event()  # the device reconnected and said something
        self.versions: list[str] = []  # what its status frames said it runs
        self.heard = asyncio.Event()  # set at each frame

    async def start(self) -> str:
        from websockets.asyncio.server import serve

        self.server = await serve(self._session, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _session(self, ws: Any) -> None:
        seen: list[dict[str, Any]] = []
        self.frames.append(seen)
        welcome = {"type": "welcome", "device_id": "dev-1", "server_config": {}}
        await ws.send(json.dumps(welcome))
        async for raw in ws:
            frame = json.loads(raw)
            seen.append(frame)
            if len(self.frames) > 1:
                self.back.set()
            if frame["type"] == "status":
                self.versions.append(frame.get("firmware_version"))
            self.heard.set()
            await ws.send(json.dumps({"type": "ack", "ref": frame.get("id")}))
            if frame["type"] == "status" and len(self.frames) == 1:
                for _ in range(2):  # a resend must not start a second download
                    await ws.send(json.dumps({"type": "firmware_update", **self.update}))


class CuttingProxy:
    """A TCP proxy in front of a real server that drops its first connection after
    ``cut`` bytes of response body, and keeps each request's head (to read its Range)."""

    def __init__(self, target_port: int, cut: int) -> None:
        self.target_port = target_port
        self.cut = cut
        self.heads: list[str] = []
        self.bodies: list[int] = []  # response body bytes passed on, per connection
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def range_starts(self) -> list[int | None]:
        starts: list[int | None] = []
        for head in self.heads:
            line = next((x for x in head.split("\r\n") if x.lower().startswith("range:")), None)
            starts.append(int(line.split("=")[1].split("-")[0]) if line else None)
        return starts

    async def _serve(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        head = await down_r.readuntil(b"\r\n\r\n")  # GET: no request body
        self.heads.append(head.decode("latin-1"))
        first = len(self.heads) == 1
        up_w.write(head)
        await up_w.drain()
        self.bodies.append(0)
        answer = await up_r.readuntil(b"\r\n\r\n")
        down_w.write(answer)
        try:
            while chunk := await up_r.read(4096):
                if first and self.bodies[-1] + len(chunk) > self.cut:
                    chunk = chunk[: self.cut - self.bodies[-1]]
                    down_w.write(chunk)
                    self.bodies[-1] += len(chunk)
                    await down_w.drain()
                    break  # the connection drops mid-body
                down_w.write(chunk)
                self.bodies[-1] += len(chunk)
                await down_w.drain()
        finally:
            for writer in (down_w, up_w):
                writer.close()
