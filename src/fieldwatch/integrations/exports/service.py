"""Accepting an uploaded export: the target device (of the workspace, with the upload's
integration type), the file checked for what it claims to be (an XML with entity
declarations is refused here, before anything is stored), kept under the health exports
directory, and a ``bulk`` sync run queued for it: the sync engine reads it like a
vendor's pages (history, counts, retry).

A device takes uploads of a type when it was registered with that ``integration_type``
(or ``integration`` in its specs), its type is the integration's name or starts with
it (``apple_health_watch``), or it was fed by uploads of that type before. Its first
upload gives it a device sync (no connection, no automatic sync).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Literal

import anyio.to_thread

from fieldwatch.auth.principal import Principal
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.models import Device
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.connectors.catalogue import CONNECTORS
from fieldwatch.integrations.exports import apple, health_connect
from fieldwatch.integrations.exports.base import exports_dir, sniff
from fieldwatch.integrations.exports.upload import ExportForm
from fieldwatch.integrations.models import DeviceSync, SyncRun
from fieldwatch.integrations.sync.repository import SyncRepository
from fieldwatch.integrations.sync.runs import open_run

ExportKind = Literal["apple_health", "health_connect"]
CHECKS = {"apple_health": apple.check, "health_connect": health_connect.check}


def _invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"field": name, "message": message}])


def fed_by(device: Device, kind: str, sync: DeviceSync | None) -> bool:
    if sync is not None:
        return sync.connector == kind
    specs = device.specs or {}
    return kind in (specs.get("integration_type"), specs.get("integration")) or (
        device.type == kind or device.type.startswith(f"{kind}_")
    )


#: How the exports are called in messages.
EXPORT_NAMES = {"apple_health": "Apple Health", "health_connect": "Health Connect"}


def _not_fed(device: Device, kind: str, sync: DeviceSync | None) -> str:
    """Why ``device`` takes no ``kind`` export, and what would make it take one."""
    name = EXPORT_NAMES.get(kind, kind)
    refused = f"Device {device.id} takes no {name} exports"
    if sync is not None:
        info = CONNECTORS.get(sync.connector)
        return f"{refused}: its data comes from {info.title if info else sync.connector}."
    other = export_kind(device)
    if other is not None:
        return f"{refused}: it takes {EXPORT_NAMES[other]} exports."
    return (f"{refused}: register it with integration_type {kind!r} (or give it a type "
            f"starting with {kind}).")  # fmt: skip


def export_kind(device: Device) -> ExportKind | None:
    """The kind of export the device takes (by its specs or type), if any."""
    for kind in ("apple_health", "health_connect"):
        if fed_by(device, kind, None):
            return kind
    return None


class ExportService:
    def __init__(self, uow: UnitOfWork, settings: Settings) -> None:
        self.uow = uow
        self.settings = settings
        self.repo = SyncRepository(uow.session)

    async def _device(self, principal: Principal, kind: str, form: ExportForm) -> DeviceSync:
        raw = form.fields.get("device_id", "").strip()
        if not raw:
            raise _invalid("device_id", "Name the target device: a device_id form field "
                           "with the device's id.")  # fmt: skip
        try:
            device_id = uuid.UUID(raw)
        except ValueError:
            raise _invalid("device_id", f"device_id {raw[:64]!r} is not a valid device id: "
                           "a device's id is a UUID.") from None  # fmt: skip
        device = await DeviceService(self.uow).get(principal, device_id)  # 404 elsewhere
        sync = await self.repo.device_sync(principal.workspace_id, device.id, lock=True)
        if not fed_by(device, kind, sync):
            raise _invalid("device_id", _not_fed(device, kind, sync))
        if sync is None:
            sync = DeviceSync(
                device_id=device.id, workspace_id=principal.workspace_id, connection_id=None,
                connector=kind, vendor_device_id=None, auto_sync=False,
                interval_minutes=self.settings.sync_interval_minutes, historical_days=0,
                sync_status="pending", next_sync_at=None, failures=0,
            )  # fmt: skip
            self.repo.add(sync)
            await self.uow.session.flush()
        return sync

    async def accept(self, principal: Principal, kind: ExportKind, form: ExportForm) -> SyncRun:
        """The queued run reading ``form``'s file (moved into place; discarded on refusal)."""
        assert form.path is not None
        try:
            sync = await self._device(principal, kind, form)
            limit = self.settings.health_export_max_unpacked_bytes
            await anyio.to_thread.run_sync(CHECKS[kind], form.path, limit)
            upload_id = uuid.uuid4()
            run = await open_run(self.uow, sync, "bulk", principal.actor, bulk_id=upload_id)
            suffix = await anyio.to_thread.run_sync(sniff, form.path)
            kept = exports_dir(self.settings) / f"{upload_id}.{suffix}"
            await anyio.to_thread.run_sync(os.replace, form.path, kept)
            form.path = None
        finally:
            form.discard()
        return run


def discard_export(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
