"""HTTP: firmware artifacts (upload, list, read, download, delete), signing keys, the
signing policy, and the downloads devices make."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from fieldwatch.auth.dependencies import Admin, Operator, Viewer
from fieldwatch.core.paging import Limit, Offset, Page, page_of
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.firmware.artifacts.delivery import artifact_response
from fieldwatch.firmware.artifacts.dependencies import (
    ArtifactServiceDep,
    DownloadAccessDep,
    DownloadingDevice,
    FilesDep,
    SigningServiceDep,
)
from fieldwatch.firmware.artifacts.schemas import (
    ArtifactRead,
    PolicyRead,
    PolicyUpdate,
    SigningKeyCreate,
    SigningKeyRead,
)
from fieldwatch.firmware.artifacts.upload import read_upload

router = APIRouter(prefix="/api/v1", tags=["firmware"])

UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "version", "device_types"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "version": {"type": "string"},
                        "device_types": {"type": "string", "description": "comma-separated"},
                        "hardware_versions": {"type": "string"},
                        "min_from_version": {"type": "string"},
                        "security_version": {"type": "integer", "minimum": 0},
                        "notes": {"type": "string"},
                        "signature": {"type": "string", "description": "base64 Ed25519"},
                        "signing_key": {"type": "string", "description": "key id or fingerprint"},
                    },
                }
            }
        },
    }
}
RANGES: dict[int | str, dict[str, Any]] = {
    206: {"description": "Part of the file (Range)"},
    304: {"description": "Unchanged (If-None-Match)"},
    416: {"description": "Range not satisfiable"},
}


@router.post(
    "/firmware/artifacts",
    response_model=ArtifactRead,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_FORM,
)
async def upload_artifact(
    request: Request,
    principal: Operator,
    uow: WriteUow,
    files: FilesDep,
    service: ArtifactServiceDep,
):
    """Upload a firmware file (multipart, streamed to disk); Fieldwatch computes its
    SHA-256 and size. With a ``signature`` it must verify (422 ``signature-invalid``);
    when the workspace requires signed firmware, an unsigned one is refused. 409 for a
    version already uploaded, 413 beyond the size limit."""
    form = await read_upload(request, files.store, files.settings.firmware_max_upload_bytes)
    artifact = await service.upload(principal, form)
    return (await service.read([artifact]))[0]


@router.get("/firmware/artifacts", response_model=Page[ArtifactRead])
async def list_artifacts(
    principal: Viewer,
    service: ArtifactServiceDep,
    device_type: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """The workspace's artifacts, newest first; ``device_type`` keeps those built for it."""
    items, total = await service.page(
        principal, device_type=device_type, limit=limit, offset=offset
    )
    return Page[ArtifactRead](
        items=await service.read(items), total=total, limit=limit, offset=offset
    )


@router.get("/firmware/artifacts/{artifact_id}", response_model=ArtifactRead)
async def get_artifact(artifact_id: uuid.UUID, principal: Viewer, service: ArtifactServiceDep):
    return (await service.read([await service.get(principal, artifact_id)]))[0]


@router.head("/firmware/artifacts/{artifact_id}/content", include_in_schema=False)
@router.get("/firmware/artifacts/{artifact_id}/content", responses=RANGES)
async def artifact_content(
    artifact_id: uuid.UUID,
    request: Request,
    principal: Operator,
    uow: UowDep,
    files: FilesDep,
    service: ArtifactServiceDep,
) -> Response:
    """Download the file (Range, ETag as for devices)."""
    artifact = await service.get(principal, artifact_id)
    await uow.release()  # no database connection held while the bytes go out
    return await artifact_response(files, request, artifact)


@router.delete("/firmware/artifacts/{artifact_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_artifact(
    artifact_id: uuid.UUID, principal: Operator, uow: WriteUow, service: ArtifactServiceDep
) -> None:
    """Delete an artifact; 409 while a rollout or a device update needs it (or refers to
    it: their history keeps it). Its file goes once no artifact refers to it."""
    await service.delete(principal, artifact_id)


@router.post(
    "/firmware/signing-keys", response_model=SigningKeyRead, status_code=status.HTTP_201_CREATED
)
async def add_signing_key(
    body: SigningKeyCreate, principal: Admin, uow: WriteUow, service: SigningServiceDep
):
    """Register an Ed25519 public key (base64 of the raw 32 bytes, or PEM) that uploads
    may be signed with."""
    return await service.add_key(principal, body)


@router.get("/firmware/signing-keys", response_model=Page[SigningKeyRead])
async def list_signing_keys(
    principal: Viewer, service: SigningServiceDep, limit: Limit = 50, offset: Offset = 0
):
    """The workspace's signing keys (revoked ones too), oldest first."""
    items, total = await service.page_keys(principal, limit=limit, offset=offset)
    return page_of(SigningKeyRead, items, total, limit=limit, offset=offset)


@router.delete("/firmware/signing-keys/{key_id}", response_model=SigningKeyRead)
async def revoke_signing_key(
    key_id: uuid.UUID, principal: Admin, uow: WriteUow, service: SigningServiceDep
):
    """Revoke a key: no new upload verifies with it (artifacts signed before keep their
    signature)."""
    return await service.revoke_key(principal, key_id)


@router.get("/firmware/policy", response_model=PolicyRead)
async def get_policy(principal: Viewer, service: SigningServiceDep):
    return await service.policy(principal)


@router.put("/firmware/policy", response_model=PolicyRead)
async def put_policy(
    body: PolicyUpdate, principal: Admin, uow: WriteUow, service: SigningServiceDep
):
    """``require_signed``: refuse uploads without a valid signature."""
    return await service.set_policy(principal, body)


@router.head("/device/firmware/artifacts/{artifact_id}", include_in_schema=False)
@router.get("/device/firmware/artifacts/{artifact_id}", responses=RANGES, tags=["device api"])
async def device_download(
    artifact_id: uuid.UUID,
    request: Request,
    device: DownloadingDevice,
    uow: UowDep,
    files: FilesDep,
    access: DownloadAccessDep,
) -> Response:
    """A device fetches an artifact of its workspace with its agent token. ``Range``
    resumes a broken download; 503 + ``Retry-After`` when too many run at once."""
    artifact = await access.for_device(device, artifact_id)
    await uow.release()
    return await artifact_response(files, request, artifact)


@router.head("/firmware/download/{artifact_id}", include_in_schema=False)
@router.get("/firmware/download/{artifact_id}", responses=RANGES, tags=["device api"])
async def signed_download(
    artifact_id: uuid.UUID,
    request: Request,
    device: Annotated[uuid.UUID, Query(description="The device the link is for")],
    expires: Annotated[int, Query(ge=0, le=2**40, description="Epoch seconds")],
    sig: Annotated[str, Query(max_length=128, description="The link's HMAC (hex)")],
    uow: UowDep,
    files: FilesDep,
    access: DownloadAccessDep,
) -> Response:
    """The signed, short-lived link an update message carries (no token): 403 when it
    is tampered with or expired."""
    artifact = await access.for_link(artifact_id, device, expires, sig)
    await uow.release()
    return await artifact_response(files, request, artifact)
