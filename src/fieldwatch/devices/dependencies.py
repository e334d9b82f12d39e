"""The devices domain's request dependencies: device-facing authentication (an agent
token, as that one device) and telling the app that a device credential was issued."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fieldwatch.core.components import Slot
from fieldwatch.core.credentials import CredentialListener
from fieldwatch.core.errors import Unauthorized
from fieldwatch.db.dependencies import UowDep
from fieldwatch.devices.service import DevicePrincipal, DeviceService

device_bearer = HTTPBearer(auto_error=False, description="A device agent token (fwd_…)")

#: Called after commit when a device token or a provisioning key is issued (an external
#: broker that checks logins itself learns the secret there).
CREDENTIAL_ISSUED: Slot[CredentialListener] = Slot("credential_issued")
CredentialIssuedDep = Annotated[CredentialListener, Depends(CREDENTIAL_ISSUED)]


async def get_device_principal(
    uow: UowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(device_bearer)],
) -> DevicePrincipal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Send 'Authorization: Bearer <device token>'.")
    device = await DeviceService(uow).authenticate_device(credentials.credentials)
    await uow.commit()  # the token's last-use note, before the route runs
    return device


DeviceAuth = Annotated[DevicePrincipal, Depends(get_device_principal)]
