"""HTTP: provisioning keys (admins), self-registration and unregistration (devices)."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fieldwatch.auth.dependencies import Admin
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.credentials import CredentialListener
from fieldwatch.core.errors import Unauthorized
from fieldwatch.core.paging import Limit, Offset, Page, page_of
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.dependencies import CredentialIssuedDep, DeviceAuth
from fieldwatch.devices.models import ProvisioningKey
from fieldwatch.devices.provisioning import ProvisioningService
from fieldwatch.devices.schemas import (
    ProvisioningKeyCreate,
    ProvisioningKeyCreated,
    ProvisioningKeyRead,
    ProvisionRequest,
    ProvisionResponse,
)

router = APIRouter(prefix="/api/v1")

provisioning_bearer = HTTPBearer(auto_error=False, description="A provisioning key (fwp_…)")


def _key_created(
    uow: UnitOfWork, credential_issued: CredentialListener, key: ProvisioningKey, secret: str
) -> ProvisioningKeyCreated:
    """The answer with the key's secret; the app learns of the secret once it is stored."""
    uow.after_commit(
        partial(credential_issued, "provisioning_key", key.workspace_id, key.id, secret)
    )
    return ProvisioningKeyCreated(
        **ProvisioningKeyRead.model_validate(key).model_dump(), key=secret
    )


@router.post(
    "/provisioning-keys",
    response_model=ProvisioningKeyCreated,
    status_code=status.HTTP_201_CREATED,
    tags=["provisioning"],
)
async def create_key(
    body: ProvisioningKeyCreate,
    principal: Admin,
    uow: WriteUow,
    credential_issued: CredentialIssuedDep,
):
    """A key devices register themselves with. The key is shown only in this answer."""
    key, secret = await ProvisioningService(uow).create_key(principal, body)
    return _key_created(uow, credential_issued, key, secret)


@router.get("/provisioning-keys", response_model=Page[ProvisioningKeyRead], tags=["provisioning"])
async def list_keys(principal: Admin, uow: UowDep, limit: Limit = 50, offset: Offset = 0):
    """The workspace's provisioning keys (revoked ones too), oldest first."""
    items, total = await ProvisioningService(uow).list_keys(principal, limit=limit, offset=offset)
    return page_of(ProvisioningKeyRead, items, total, limit=limit, offset=offset)


@router.post(
    "/provisioning-keys/{key_id}/rotate",
    response_model=ProvisioningKeyCreated,
    tags=["provisioning"],
)
async def rotate_key(
    key_id: uuid.UUID, principal: Admin, uow: WriteUow, credential_issued: CredentialIssuedDep
):
    """Replace the key's secret: the old one stops working at once (devices already
    registered keep their own tokens)."""
    key, secret = await ProvisioningService(uow).rotate_key(principal, key_id)
    return _key_created(uow, credential_issued, key, secret)


@router.delete(
    "/provisioning-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["provisioning"]
)
async def revoke_key(key_id: uuid.UUID, principal: Admin, uow: WriteUow) -> Response:
    await ProvisioningService(uow).revoke_key(principal, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/provision",
    response_model=ProvisionResponse,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "A known device registered again: a new token"}},
    tags=["device api"],
)
async def provision(
    body: ProvisionRequest,
    uow: WriteUow,
    settings: SettingsDep,
    credential_issued: CredentialIssuedDep,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(provisioning_bearer)],
):
    """Device-facing (seed 003 register): send ``Authorization: Bearer <provisioning key>``
    and the device's serial number, name and type; get the device id, its token and the
    server configuration. 201 for a new device, 200 for a known serial."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Send 'Authorization: Bearer <provisioning key>'.")
    answer = await ProvisioningService(uow).register(credentials.credentials, body, settings)
    uow.after_commit(
        partial(credential_issued, "device_token", answer.device_id, answer.token_id,
                answer.auth_token)
    )  # fmt: skip
    if not answer.created:
        response.status_code = status.HTTP_200_OK
    return answer


@router.post("/device/unregister", status_code=status.HTTP_204_NO_CONTENT, tags=["device api"])
async def unregister(device: DeviceAuth, uow: WriteUow) -> Response:
    """Device-facing (seed 003 unregister): revoke all of this device's tokens and
    retire it. Irreversible: a retired device cannot register again."""
    await ProvisioningService(uow).unregister(device.workspace_id, device.device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
