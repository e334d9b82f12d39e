"""The artifacts API's request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials

from fieldwatch.auth.dependencies import bearer
from fieldwatch.core import credentials as creds
from fieldwatch.core.components import Slot
from fieldwatch.core.errors import Unauthorized
from fieldwatch.db.dependencies import UowDep
from fieldwatch.devices.service import DevicePrincipal, DeviceService
from fieldwatch.firmware.artifacts.delivery import DownloadAccess
from fieldwatch.firmware.artifacts.download import FirmwareFiles
from fieldwatch.firmware.artifacts.keys import SigningService
from fieldwatch.firmware.artifacts.service import ArtifactService

#: The process's blob store, download-link signer and download cap (built once).
FIRMWARE_FILES: Slot[FirmwareFiles] = Slot("firmware_files")
FilesDep = Annotated[FirmwareFiles, Depends(FIRMWARE_FILES)]


async def artifact_service(uow: UowDep, files: FilesDep) -> ArtifactService:
    return ArtifactService(uow, files.store)


async def signing_service(uow: UowDep) -> SigningService:
    return SigningService(uow)


async def download_access(uow: UowDep, files: FilesDep) -> DownloadAccess:
    return DownloadAccess(uow, files)


async def downloading_device(
    uow: UowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> DevicePrincipal:
    """The device whose agent token the request carries (401 for any other)."""
    token = credentials.credentials if credentials is not None else ""
    if not token.startswith(creds.DEVICE_TOKEN_PREFIX):
        raise Unauthorized("Send 'Authorization: Bearer <agent token>'.")
    device = await DeviceService(uow).authenticate_device(token)
    await uow.commit()  # only the token's last-use note
    return device


ArtifactServiceDep = Annotated[ArtifactService, Depends(artifact_service)]
SigningServiceDep = Annotated[SigningService, Depends(signing_service)]
DownloadAccessDep = Annotated[DownloadAccess, Depends(download_access)]
DownloadingDevice = Annotated[DevicePrincipal, Depends(downloading_device)]
