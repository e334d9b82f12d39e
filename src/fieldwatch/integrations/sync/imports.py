"""The devices a connection feeds: listing the vendor account's devices and importing
them as Fieldwatch devices, each with its sync settings.

An imported device is created through the devices service (type ``<vendor>_<kind>``,
e.g. ``oura_ring``; in stock, like any new device: ingestion accepts readings of every
device that is not retired, and deploying it through the inventory makes alert rules
apply). Its first sync is due at once and reaches ``sync_historical_days`` back.
Importing a device again answers the device it became, with the sync settings given
applied (``updated``: they changed something; see ``sync.settings``).
"""

from __future__ import annotations

import uuid

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.schemas import DeviceCreate
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.connections.repository import ConnectionRepository
from fieldwatch.integrations.connections.tokens import (
    ConnectionUnusable,
    RefreshFailed,
    TokenSource,
)
from fieldwatch.integrations.connectors.base import DataConnector, VendorDevice, VendorError
from fieldwatch.integrations.connectors.registry import data_connector
from fieldwatch.integrations.models import Connection, DeviceSync
from fieldwatch.integrations.sync.repository import SyncRepository
from fieldwatch.integrations.sync.schemas import ImportedDevice, ImportRequest, VendorDeviceRead
from fieldwatch.integrations.sync.settings import change_settings
from fieldwatch.integrations.sync.vendor import VendorSession

#: A device's type by connector (what the vendor's devices are).
DEVICE_TYPES = {"oura": "oura_ring"}


def _device_type(kind: str, device: VendorDevice) -> str:
    if device.kind:
        return f"{kind}_{device.kind}"
    return DEVICE_TYPES.get(kind, f"{kind}_device")


class DeviceImport:
    def __init__(self, uow: UnitOfWork, settings: Settings, tokens: TokenSource) -> None:
        self.uow = uow
        self.settings = settings
        self.tokens = tokens
        self.repo = SyncRepository(uow.session)
        self.connections = ConnectionRepository(uow.session)

    async def _connection(
        self, principal: Principal, kind: str, connection_id: uuid.UUID
    ) -> tuple[Connection, DataConnector]:
        connection = await self.connections.get(principal.workspace_id, connection_id)
        connector = data_connector(kind)
        if connection is None or connection.connector != kind:
            raise NotFound(f"No {kind} connection {connection_id} in this workspace.")
        if connector is None:
            raise Conflict(f"Devices of {kind} cannot be synced in this version.")
        if connection.status != "active":
            raise Conflict(f"The connection is {connection.status}: authorise it again.",
                           connection_status=connection.status)  # fmt: skip
        return connection, connector

    async def _vendor_devices(
        self, connection: Connection, connector: DataConnector
    ) -> list[VendorDevice]:
        await self.uow.release()  # no pooled connection held while the vendor answers
        try:
            async with VendorSession(self.tokens, self.settings, connector,
                                     connection.id) as vendor:  # fmt: skip
                return await vendor.call(connector.devices)
        except ConnectionUnusable as exc:
            raise Conflict(f"The connection needs authorising again: {exc.reason}.",
                           connection_status=exc.status) from None  # fmt: skip
        except (RefreshFailed, VendorError, OSError) as exc:
            raise ServiceUnavailable(
                f"{connector.info.title} did not answer ({type(exc).__name__}); try again.",
                headers={"Retry-After": "30"},
            ) from None

    async def vendor_devices(
        self, principal: Principal, kind: str, connection_id: uuid.UUID
    ) -> list[VendorDeviceRead]:
        connection, connector = await self._connection(principal, kind, connection_id)
        imported = await self.repo.imported(connection.id)
        devices = await self._vendor_devices(connection, connector)
        return [
            VendorDeviceRead(vendor_device_id=d.id, title=d.title, model=d.model,
                             firmware_version=d.firmware_version,
                             device_id=imported.get(d.id))
            for d in devices
        ]  # fmt: skip

    async def import_devices(
        self, principal: Principal, kind: str, body: ImportRequest
    ) -> list[ImportedDevice]:
        connection, connector = await self._connection(principal, kind, body.connection_id)
        found = {d.id: d for d in await self._vendor_devices(connection, connector)}
        unknown = [v for v in body.devices if v not in found]
        if unknown:
            raise BadRequest(f"The {kind} account has no device {', '.join(unknown)}.",
                             vendor_devices=sorted(found))  # fmt: skip
        imported = await self.repo.imported(connection.id)
        given = (body.sync_settings.model_dump(include=body.sync_settings.model_fields_set)
                 if "sync_settings" in body.model_fields_set else {})  # fmt: skip
        out = []
        for vendor_id in dict.fromkeys(body.devices):
            if vendor_id in imported:
                sync = await self.repo.device_sync(principal.workspace_id, imported[vendor_id])
                if sync is not None:
                    changed = await change_settings(self.uow, principal, sync, given)
                    out.append(ImportedDevice(vendor_device_id=vendor_id, device_id=sync.device_id,
                                              created=False, updated=bool(changed),
                                              sync_status=sync.sync_status,
                                              next_sync=sync.next_sync_at))  # fmt: skip
                    continue
            sync = await self._create(principal, connection, connector, found[vendor_id], body)
            out.append(ImportedDevice(vendor_device_id=vendor_id, device_id=sync.device_id,
                                      created=True, sync_status=sync.sync_status,
                                      next_sync=sync.next_sync_at))  # fmt: skip
        return out

    async def _create(
        self,
        principal: Principal,
        connection: Connection,
        connector: DataConnector,
        vendor_device: VendorDevice,
        body: ImportRequest,
    ) -> DeviceSync:
        info = connector.info
        device = await DeviceService(self.uow).create(principal, DeviceCreate(
            name=vendor_device.title, type=_device_type(info.type, vendor_device),
            manufacturer=info.vendor, model=vendor_device.model,
            firmware_version=vendor_device.firmware_version,
            capabilities=[m for m in connector.fetchable if m in connection.consent],
            specs={"integration": info.type, "connection_id": str(connection.id),
                   "vendor_device_id": vendor_device.id},
        ))  # fmt: skip
        settings = body.sync_settings
        days = settings.sync_historical_days
        days = self.settings.sync_historical_days if days is None else days
        if info.history_days is not None:
            days = min(days, info.history_days)
        sync = DeviceSync(
            device_id=device.id, workspace_id=principal.workspace_id,
            connection_id=connection.id, connector=info.type,
            vendor_device_id=vendor_device.id, auto_sync=settings.auto_sync,
            interval_minutes=settings.sync_interval_minutes or self.settings.sync_interval_minutes,
            historical_days=days, sync_status="pending",
            next_sync_at=utcnow() if settings.auto_sync else None, failures=0,
        )  # fmt: skip
        self.repo.add(sync)
        await self.uow.session.flush()
        return sync
