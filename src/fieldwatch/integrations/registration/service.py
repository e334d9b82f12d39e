"""Registering a device in the seed's shape: the device, and where it names a vendor
cloud, a connection holding the given tokens (sealed) and the device's sync settings.

The connector is the ``connector`` field, else ``integration_type`` when it names one,
else the connector the device type starts with (``oura_ring`` → ``oura``,
``google_health_account`` → ``google_health``). The access token is checked
with the vendor (the account's id); a vendor that can not be reached leaves the
connection ``pending`` (it syncs once it is authorised through the OAuth flow). A
registration of an account already connected in the workspace reuses its connection,
storing the newer tokens. The registered device is linked to its vendor device (the
account's device whose id is its serial number, else the account's only device not
linked yet), so importing the account's devices finds it instead of creating it again.
Credentials are never returned nor logged.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import BadRequest, Conflict
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.schemas import DeviceCreate
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.connections.repository import ConnectionRepository
from fieldwatch.integrations.connections.service import credentials_context, token_expiry
from fieldwatch.integrations.connectors.base import DataConnector, VendorDevice
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, ConnectorInfo
from fieldwatch.integrations.connectors.registry import data_connector
from fieldwatch.integrations.crypto import KeyRing
from fieldwatch.integrations.models import Connection, DeviceSync
from fieldwatch.integrations.oauth import OAuthFlow, VendorRefused, VendorUnreachable
from fieldwatch.integrations.registration.schemas import DeviceRegistration, RegistrationRead
from fieldwatch.integrations.sync.repository import SyncRepository

log = logging.getLogger(__name__)


def connector_name(body: DeviceRegistration) -> str:
    if body.connector:
        return body.connector
    if body.integration_type in CONNECTORS:
        return body.integration_type
    kind = body.device_type.lower()  # the longest connector it starts with: google_health_…
    for name in sorted(CONNECTORS, key=len, reverse=True):
        if kind == name or kind.startswith(f"{name}_"):
            return name
    return kind.split("_", 1)[0]


def linked_vendor_device(
    devices: list[VendorDevice], serial: str | None, taken: set[str]
) -> str | None:
    """The vendor's device a registered device is: the one whose id is its serial
    number, else the account's only device not linked to a Fieldwatch device yet (an
    Oura account's ring); None when that can't be told (then importing links nothing
    and creates the vendor's devices as new ones)."""
    ids = [d.id for d in devices]
    if serial and serial in ids:
        return serial
    free = [i for i in ids if i not in taken]
    return free[0] if len(free) == 1 else None


def _token(body: DeviceRegistration) -> dict[str, Any]:
    assert body.credentials is not None
    given = body.credentials
    token: dict[str, Any] = {"access_token": given.access_token.get_secret_value(),
                             "token_type": "Bearer"}  # fmt: skip
    if given.refresh_token is not None:
        token["refresh_token"] = given.refresh_token.get_secret_value()
    if given.expires_at is not None:
        token["expires_at"] = given.expires_at.timestamp()
    return token


class RegistrationService:
    def __init__(self, uow: UnitOfWork, settings: Settings, ring: KeyRing) -> None:
        self.uow = uow
        self.settings = settings
        self.ring = ring
        self.connections = ConnectionRepository(uow.session)
        self.syncs = SyncRepository(uow.session)

    def _connector(self, kind: str) -> tuple[ConnectorInfo, DataConnector]:
        info = CONNECTORS.get(kind)
        if info is None:
            raise BadRequest(
                f"No vendor connector {kind!r} for these credentials: name one with "
                f"'connector' (see GET /api/v1/integrations).",
                connectors=sorted(CONNECTORS),
            )
        lifecycle = info.lifecycle(utcnow().date())
        if lifecycle != "active":
            successor = f"; connect {info.successor} instead" if info.successor else ""
            raise Conflict(f"{info.title} is {lifecycle}{successor}. {info.notes or ''}".strip(),
                           integration=kind, lifecycle=lifecycle,
                           successor=info.successor)  # fmt: skip
        connector = data_connector(kind)
        if info.auth == "upload" or connector is None:
            raise Conflict(f"{info.title} devices cannot be synced from a vendor cloud in "
                           "this version.", integration=kind)  # fmt: skip
        if not self.settings.vendor_app(kind).configured:
            name = kind.upper()
            raise Conflict(f"{info.title} is not configured: set FIELDWATCH_{name}__CLIENT_ID "
                           f"and FIELDWATCH_{name}__CLIENT_SECRET.", integration=kind)  # fmt: skip
        return info, connector

    async def register(self, principal: Principal, body: DeviceRegistration) -> RegistrationRead:
        connection: Connection | None = None
        info: ConnectorInfo | None = None
        vendor_devices: list[VendorDevice] = []
        if body.credentials is not None:
            info, connector = self._connector(connector_name(body))
            connection, vendor_devices = await self._connection(principal, info, connector,
                                                                _token(body))  # fmt: skip
        device = await DeviceService(self.uow).create(principal, DeviceCreate(
            name=body.device_name, type=body.device_type, manufacturer=body.manufacturer,
            model=body.model, serial_number=body.serial_number,
            firmware_version=body.firmware_version, capabilities=body.capabilities,
            specs={"integration_type": body.integration_type,
                   **({"integration": info.type, "connection_id": str(connection.id)}
                      if info and connection else {})},
        ))  # fmt: skip
        if connection is None or info is None:
            return RegistrationRead(device_id=device.id, sync_status=None, last_sync=None,
                                    next_sync=None, created_at=device.created_at)  # fmt: skip
        taken = set(await self.syncs.imported(connection.id))
        vendor_id = linked_vendor_device(vendor_devices, body.serial_number, taken)
        sync = self._device_sync(principal, device.id, connection, info, body, vendor_id)
        return RegistrationRead(
            device_id=device.id, sync_status=sync.sync_status, last_sync=None,
            next_sync=sync.next_sync_at, created_at=device.created_at,
            connector=info.type, connection_id=connection.id,
        )  # fmt: skip

    async def _account(
        self, connector: DataConnector, token: dict[str, Any]
    ) -> tuple[str | None, list[VendorDevice]]:
        """The vendor's account id of the token (None when the vendor can't be reached)
        and the account's devices (to link the registered device to its own)."""
        flow = OAuthFlow(self.settings, connector, self.settings.vendor_app(connector.info.type))
        await self.uow.release()  # no pooled connection held while the vendor answers
        try:
            account = await flow.account_id(token)
        except VendorRefused as exc:
            raise BadRequest(
                f"{connector.info.title} refused the access token ({exc.error}): "
                "authorise the account again.",
                vendor_error=exc.error,
            ) from None
        except VendorUnreachable:
            return None, []
        try:
            return account, await flow.devices(token)
        except (VendorRefused, VendorUnreachable) as exc:
            log.info("registration: the vendor's devices could not be listed",
                     extra={"connector": connector.info.type, "error": str(exc)})  # fmt: skip
            return account, []

    async def _connection(
        self, principal: Principal, info: ConnectorInfo, connector: DataConnector,
        token: dict[str, Any],
    ) -> tuple[Connection, list[VendorDevice]]:  # fmt: skip
        account, devices = await self._account(connector, token)
        connection = None
        if account is not None:
            connection = await self.connections.by_account(principal.workspace_id, info.type,
                                                           account)  # fmt: skip
        if connection is None:
            connection = Connection(
                id=uuid.uuid4(), workspace_id=principal.workspace_id, connector=info.type,
                label=f"{info.vendor} {account or 'account (unverified)'}",
                external_user_id=account, created_by=principal.actor,
                consent=list(info.data_types), scopes=[], token_version=0,
            )  # fmt: skip
            self.connections.add(connection)
        if account is None:
            connection.status = "pending"
            connection.status_reason = f"{info.title} could not be reached to verify the tokens"
        elif connection.status != "revoked":
            connection.status, connection.status_reason = "active", None
        connection.token_expires_at = token_expiry(token)
        connection.credentials = self.ring.seal(json.dumps(token).encode(),
                                                credentials_context(connection))  # fmt: skip
        connection.token_version = (connection.token_version or 0) + 1
        await self.uow.session.flush()
        log.info("connection registered with a device",
                 extra={"connection": str(connection.id), "connector": info.type,
                        "verified": account is not None})  # fmt: skip
        return connection, devices

    def _device_sync(
        self, principal: Principal, device_id: uuid.UUID, connection: Connection,
        info: ConnectorInfo, body: DeviceRegistration, vendor_device_id: str | None,
    ) -> DeviceSync:  # fmt: skip
        wanted = body.sync_settings
        days = wanted.sync_historical_days
        days = self.settings.sync_historical_days if days is None else days
        if info.history_days is not None:
            days = min(days, info.history_days)
        due = wanted.auto_sync and connection.status == "active"
        sync = DeviceSync(
            device_id=device_id, workspace_id=principal.workspace_id,
            connection_id=connection.id, connector=info.type,
            vendor_device_id=vendor_device_id or body.serial_number, auto_sync=wanted.auto_sync,
            interval_minutes=wanted.sync_interval_minutes or self.settings.sync_interval_minutes,
            historical_days=days, sync_status="pending",
            next_sync_at=utcnow() if due else None, failures=0,
        )  # fmt: skip
        self.syncs.add(sync)
        return sync
