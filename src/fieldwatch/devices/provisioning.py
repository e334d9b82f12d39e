"""Self-registration (seed 003 ``register``) with workspace provisioning keys, and
unregistration.

An admin creates a provisioning key (``fwp_…``, shown once, stored as a digest) and
builds it into the firmware. A device presents it with its own identifier (serial
number) and gets a device token back, over HTTP (``POST /api/v1/provision``) or MQTT
(username = the key's prefix; see docs/device-protocol.md). A serial the workspace
already knows is the same device registering again (after a factory reset, say): it
keeps its record and gets a new token, and tokens from its earlier registrations are
revoked. New devices start in the key's ``initial_status`` (``in_stock`` unless the key
says otherwise). Unregistering revokes all of the device's tokens and retires it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from fieldwatch.auth.principal import Principal, acting_for
from fieldwatch.core import credentials
from fieldwatch.core.clock import usage_is_stale, utcnow
from fieldwatch.core.errors import NotFound, Unauthorized, found_in_workspace
from fieldwatch.core.events import credentials_changed
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.errors import DeviceRetired
from fieldwatch.devices.lifecycle import Action, DeviceStatus
from fieldwatch.devices.models import ProvisioningKey
from fieldwatch.devices.repository import PROVISIONED_TOKEN_NAME, ProvisioningKeyRepository
from fieldwatch.devices.schemas import (
    AgentTokenCreate,
    DeviceCreate,
    DeviceUpdate,
    ProvisioningKeyCreate,
    ProvisionRequest,
    ProvisionResponse,
    ServerConfig,
)
from fieldwatch.devices.service import DeviceService
from fieldwatch.devices.transitions import LifecycleService

PROVISIONING_KEY_PREFIX = "fwp_"
#: Seed 003 server_config values that are not settings.
DATA_REPORTING_INTERVAL_S = 300
MAX_RETRY_ATTEMPTS = 3


def server_config(settings: Settings) -> ServerConfig:
    """What a device is told when it connects or registers (seed 003)."""
    return ServerConfig(
        heartbeat_interval=settings.heartbeat_interval_s,
        data_reporting_interval=DATA_REPORTING_INTERVAL_S,
        max_retry_attempts=MAX_RETRY_ATTEMPTS,
    )


class ProvisioningKeyNotFound(NotFound):
    slug, title = "provisioning-key-not-found", "Provisioning key not found"


class ProvisioningService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.keys = ProvisioningKeyRepository(uow.session)

    # --- keys (admins) --------------------------------------------------------------

    async def create_key(
        self, principal: Principal, body: ProvisioningKeyCreate
    ) -> tuple[ProvisioningKey, str]:
        issued = credentials.issue(PROVISIONING_KEY_PREFIX)
        key = ProvisioningKey(
            workspace_id=principal.workspace_id,
            name=body.name,
            prefix=issued.prefix,
            key_digest=issued.digest,
            initial_status=body.initial_status,
            created_by=principal.user_id,
            created_at=utcnow(),
            devices_registered=0,
        )
        self.keys.add(key)
        await self.uow.session.flush()
        return key, issued.secret

    async def list_keys(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[Sequence[ProvisioningKey], int]:
        return await self.keys.page(principal.workspace_id, limit=limit, offset=offset)

    async def _key(self, principal: Principal, key_id: uuid.UUID) -> ProvisioningKey:
        key = await self.keys.get(principal.workspace_id, key_id)
        return found_in_workspace(key, "provisioning key", key_id, ProvisioningKeyNotFound)

    async def rotate_key(
        self, principal: Principal, key_id: uuid.UUID
    ) -> tuple[ProvisioningKey, str]:
        """A new secret for the key; the old one stops working at once."""
        key = await self._key(principal, key_id)
        issued = credentials.issue(PROVISIONING_KEY_PREFIX)
        key.key_digest, key.prefix = issued.digest, issued.prefix
        key.rotated_at = utcnow()
        key.revoked_at = None
        await self.uow.session.flush()
        self.uow.emit(credentials_changed(key.workspace_id, "provisioning_key_rotated"))
        return key, issued.secret

    async def revoke_key(self, principal: Principal, key_id: uuid.UUID) -> ProvisioningKey:
        key = await self._key(principal, key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            await self.uow.session.flush()
            self.uow.emit(credentials_changed(key.workspace_id, "provisioning_key_revoked"))
        return key

    # --- devices --------------------------------------------------------------------

    async def authenticate_key(self, secret: str) -> tuple[ProvisioningKey, Principal]:
        """The key and the principal registrations act as (for the audit log)."""
        if not secret.startswith(PROVISIONING_KEY_PREFIX):
            raise Unauthorized("Not a provisioning key.")
        key = await self.keys.by_digest(credentials.digest(secret))
        if key is None or not credentials.matches(secret, key.key_digest):
            raise Unauthorized("Invalid provisioning key.")
        if key.revoked_at is not None:
            raise Unauthorized("This provisioning key has been revoked.")
        principal = await acting_for(
            self.uow.session, key.workspace_id, "provisioning_key", f"{key.name} ({key.prefix}…)"
        )
        return key, principal

    async def register(
        self, secret: str, request: ProvisionRequest, settings: Settings
    ) -> ProvisionResponse:
        key, principal = await self.authenticate_key(secret)
        return await self._register(key, principal, request, settings)

    async def _register(
        self,
        key: ProvisioningKey,
        principal: Principal,
        request: ProvisionRequest,
        settings: Settings,
    ) -> ProvisionResponse:
        devices = DeviceService(self.uow)
        device = await devices.devices.by_serial(key.workspace_id, request.serial_number)
        created = device is None
        now = utcnow()
        if device is None:
            device = await devices.create(
                principal,
                DeviceCreate(
                    name=request.name,
                    type=request.type,
                    serial_number=request.serial_number,
                    firmware_version=request.firmware_version,
                    hardware_version=request.hardware_version,
                    capabilities=request.capabilities,
                    location=request.location,
                ),
            )
            key.devices_registered += 1
            if key.initial_status != DeviceStatus.in_stock.value:
                device = await LifecycleService(self.uow).change_status_loaded(
                    principal, device, DeviceStatus(key.initial_status),
                    request.location, "self-registered",
                )  # fmt: skip
        else:
            if device.status == DeviceStatus.retired:
                raise DeviceRetired(
                    f"Device {request.serial_number!r} is retired; it cannot register again."
                )
            # What the device knows best about itself; the operator's name and type stay.
            found = {"firmware_version": request.firmware_version,
                     "hardware_version": request.hardware_version,
                     "capabilities": request.capabilities or None}  # fmt: skip
            changes = {k: v for k, v in found.items() if v is not None and getattr(device, k) != v}
            if changes:
                device = await devices.update_loaded(principal, device, DeviceUpdate(**changes))
            if await self.keys.revoke_provisioned_tokens(device.id, now):
                self.uow.emit(
                    credentials_changed(device.workspace_id, "device_re_registered", device.id)
                )
        token = await devices.issue_token(
            principal, device.id, AgentTokenCreate(name=PROVISIONED_TOKEN_NAME, mqtt=request.mqtt)
        )
        if usage_is_stale(key.last_used_at, now):
            key.last_used_at = now
        await self.uow.session.flush()
        return ProvisionResponse(
            device_id=device.id,
            serial_number=request.serial_number,
            auth_token=token.token,
            token_id=token.id,
            created=created,
            device_status=DeviceStatus(device.status),
            timestamp=time.time(),
            server_config=server_config(settings),
        )

    async def unregister(self, workspace_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """Seed 003 ``unregister``, by the device itself: revoke every token of the
        device and retire it."""
        principal = await acting_for(self.uow.session, workspace_id, "device", str(device_id))
        devices = DeviceService(self.uow)
        loaded = await devices.get(principal, device_id)
        await devices.tokens.revoke_all(loaded.id, utcnow())
        self.uow.emit(credentials_changed(loaded.workspace_id, "device_unregistered", loaded.id))
        if loaded.status != DeviceStatus.retired:
            await LifecycleService(self.uow).perform(
                principal, loaded.id, Action.retired, notes="unregistered by the device"
            )
