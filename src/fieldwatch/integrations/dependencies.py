"""Integrations' request dependencies: the key ring sealing credentials."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.core.components import SettingsDep, Slot
from fieldwatch.db.dependencies import UowDep
from fieldwatch.integrations.connections.service import ConnectionService
from fieldwatch.integrations.crypto import KeyRing

KEY_RING: Slot[KeyRing] = Slot("key_ring")
KeyRingDep = Annotated[KeyRing, Depends(KEY_RING)]


async def get_connection_service(
    uow: UowDep, settings: SettingsDep, ring: KeyRingDep
) -> ConnectionService:
    return ConnectionService(uow, settings, ring)


ConnectionServiceDep = Annotated[ConnectionService, Depends(get_connection_service)]
