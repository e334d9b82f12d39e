"""Device-facing authentication: an agent token, as that one device."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fieldwatch.core.errors import Unauthorized
from fieldwatch.devices.service import DevicePrincipal, DeviceService
from fieldwatch.runtime import UowDep

device_bearer = HTTPBearer(auto_error=False, description="A device agent token (fwd_…)")


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
