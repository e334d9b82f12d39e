"""Integrations' request dependencies: the key ring sealing credentials, the sync
engine (its token source and clock), the services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.core.components import SettingsDep, Slot
from fieldwatch.db.dependencies import UowDep
from fieldwatch.integrations.connections.service import ConnectionService
from fieldwatch.integrations.crypto import KeyRing
from fieldwatch.integrations.sync.engine import SyncEngine
from fieldwatch.integrations.sync.imports import DeviceImport
from fieldwatch.integrations.sync.service import SyncService
from fieldwatch.integrations.webhooks.google_signature import SignatureKeys

KEY_RING: Slot[KeyRing] = Slot("key_ring")
KeyRingDep = Annotated[KeyRing, Depends(KEY_RING)]


async def get_connection_service(
    uow: UowDep, settings: SettingsDep, ring: KeyRingDep
) -> ConnectionService:
    return ConnectionService(uow, settings, ring)


ConnectionServiceDep = Annotated[ConnectionService, Depends(get_connection_service)]


#: Google Health's public keys (kept per process), checking its notifications' signatures.
GOOGLE_HEALTH_KEYS: Slot[SignatureKeys] = Slot("google_health_keys")
GoogleHealthKeysDep = Annotated[SignatureKeys, Depends(GOOGLE_HEALTH_KEYS)]

SYNC_ENGINE: Slot[SyncEngine] = Slot("sync_engine")
SyncEngineDep = Annotated[SyncEngine, Depends(SYNC_ENGINE)]


async def get_sync_service(uow: UowDep) -> SyncService:
    return SyncService(uow)


async def get_device_import(
    uow: UowDep, settings: SettingsDep, engine: SyncEngineDep
) -> DeviceImport:
    return DeviceImport(uow, settings, engine.tokens)


SyncServiceDep = Annotated[SyncService, Depends(get_sync_service)]
DeviceImportDep = Annotated[DeviceImport, Depends(get_device_import)]
