"""Sending an artifact's bytes: who may fetch it (an operator, a device with its agent
token, a signed link) and the answer itself.

Ranges, ``If-Range`` and 416 are Starlette's ``FileResponse``'s; here are the strong
``ETag`` (the SHA-256), ``If-None-Match`` (304), the download cap (held for the whole
body) and, with ``firmware_accel_redirect_prefix``, the hand-over to nginx.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from urllib.parse import quote

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, Response
from starlette.types import Receive, Scope, Send

from fieldwatch.core.errors import AppError, problem_response
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.service import DevicePrincipal
from fieldwatch.firmware.artifacts.download import DownloadGate, FirmwareFiles
from fieldwatch.firmware.artifacts.errors import (
    ArtifactNotFound,
    DownloadLinkInvalid,
    DownloadsBusy,
)
from fieldwatch.firmware.artifacts.repository import ArtifactRepository
from fieldwatch.firmware.models import FirmwareArtifact

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"


def etag_of(artifact: FirmwareArtifact) -> str:
    return f'"{artifact.sha256}"'


def etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match``: any of its tags (weak comparison), or ``*``."""
    tags = (tag.strip() for tag in header.split(","))
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)


def content_disposition(filename: str) -> str:
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


class GatedFileResponse(FileResponse):
    """A ``FileResponse`` that takes a slot of the download cap for its whole body (a
    HEAD sends none and needs none); no slot in time: 503 with ``Retry-After``."""

    def __init__(self, *args: object, gate: DownloadGate, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = gate

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        """A Range header that cannot be read is ignored: the whole file (RFC 9110
        14.2), rather than Starlette's 400, which a device could only give up on."""
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method", "GET").upper() == "HEAD":
            await super().__call__(scope, receive, send)
            return
        try:
            await self.gate.acquire()
        except DownloadsBusy as exc:
            answer = problem_response(exc.to_problem(scope.get("path")), exc.headers)
            await answer(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.gate.release()


async def artifact_response(
    files: FirmwareFiles, request: Request, artifact: FirmwareArtifact
) -> Response:
    """The artifact's bytes (or a part of them, or nothing new: 304) for ``request``."""
    etag = etag_of(artifact)
    headers = {"ETag": etag, "Accept-Ranges": "bytes"}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    prefix = files.settings.firmware_accel_redirect_prefix
    if prefix:
        headers["X-Accel-Redirect"] = (
            prefix.rstrip("/") + "/" + files.store.relative_path(artifact.sha256)
        )
        headers["Content-Disposition"] = content_disposition(artifact.filename)
        return Response(b"", headers=headers, media_type=OCTET_STREAM)
    path = files.store.path(artifact.sha256)
    try:
        stat = await anyio.to_thread.run_sync(os.stat, path)
    except FileNotFoundError:
        log.error("a firmware blob is missing", extra={"sha256": artifact.sha256})
        raise AppError("The artifact's file is missing from the store.") from None
    return GatedFileResponse(
        path,
        headers=headers,
        media_type=OCTET_STREAM,
        filename=artifact.filename,
        stat_result=stat,
        gate=files.gate,
    )


class DownloadAccess:
    """Which artifact a device (or a signed link) may fetch: its own workspace's, while
    it is not retired; anything else is not found (nothing tells that it exists)."""

    def __init__(self, uow: UnitOfWork, files: FirmwareFiles) -> None:
        self.uow = uow
        self.files = files
        self.artifacts = ArtifactRepository(uow.session)

    async def for_device(self, device: DevicePrincipal, artifact_id: uuid.UUID) -> FirmwareArtifact:
        artifact = await self.artifacts.get(device.workspace_id, artifact_id)
        if artifact is None or device.device.status == DeviceStatus.retired:
            raise ArtifactNotFound(f"No firmware artifact {artifact_id} for this device.")
        return artifact

    async def for_link(
        self, artifact_id: uuid.UUID, device_id: uuid.UUID, expires: int, sig: str
    ) -> FirmwareArtifact:
        if not self.files.signer.valid(artifact_id, device_id, expires, sig, time.time()):
            raise DownloadLinkInvalid(
                "This download link is invalid or has expired; ask for the update again."
            )
        artifact = await self.artifacts.by_id(artifact_id)
        device = await self.artifacts.device(device_id)
        if (
            artifact is None
            or device is None
            or device.workspace_id != artifact.workspace_id
            or device.status == DeviceStatus.retired
        ):
            raise ArtifactNotFound(f"No firmware artifact {artifact_id} for this device.")
        return artifact
