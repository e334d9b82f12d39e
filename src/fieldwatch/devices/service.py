"""Registry rules: creating, reading, updating and purging devices; agent tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from fieldwatch.auth.principal import Principal
from fieldwatch.core import credentials
from fieldwatch.core.clock import usage_is_stale, utcnow
from fieldwatch.core.errors import ConcurrentModification, Unauthorized, found_in_workspace
from fieldwatch.core.events import credentials_changed
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices import events
from fieldwatch.devices.errors import DeviceNotFound, DeviceRetired, DuplicateSerial
from fieldwatch.devices.lifecycle import Action, DeviceStatus
from fieldwatch.devices.log import diff
from fieldwatch.devices.models import AgentToken, Device
from fieldwatch.devices.repository import (
    AgentTokenRepository,
    DeviceFilter,
    DeviceLogRepository,
    DeviceRepository,
)
from fieldwatch.devices.schemas import (
    AgentTokenCreate,
    AgentTokenCreated,
    DeviceCreate,
    DeviceUpdate,
    StatusChangeRead,
)

SNAPSHOT_FIELDS = [
    "name",
    "type",
    "serial_number",
    "manufacturer",
    "model",
    "firmware_version",
    "hardware_version",
    "capabilities",
    "tags",
    "specs",
    "location",
    "status",
    "purchase_date",
    "deploy_date",
    "last_maintenance",
]


def snapshot(device: Device) -> dict[str, Any]:
    return {f: getattr(device, f) for f in SNAPSHOT_FIELDS}


@dataclass(frozen=True, slots=True)
class DevicePrincipal:
    """A device authenticated by its agent token: it may act only as itself."""

    device_id: uuid.UUID
    workspace_id: uuid.UUID
    token_id: uuid.UUID
    device: Device
    mqtt: bool = True  # the token was created for MQTT


async def flush_guarded(uow: UnitOfWork) -> None:
    """Flush, turning a lost optimistic-lock race or a duplicate serial into a 409."""
    try:
        await uow.session.flush()
    except StaleDataError as exc:
        raise ConcurrentModification(
            "The device was changed by another request at the same time; reload and retry."
        ) from exc
    except IntegrityError as exc:
        if "serial" in str(exc.orig).lower():
            raise DuplicateSerial(
                "Another device in this workspace has that serial number."
            ) from exc
        raise


class DeviceService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.devices = DeviceRepository(uow.session)
        self.tokens = AgentTokenRepository(uow.session)
        self.logs = DeviceLogRepository(uow.session)

    async def get(self, principal: Principal, device_id: uuid.UUID) -> Device:
        device = await self.devices.get(principal.workspace_id, device_id)
        return found_in_workspace(device, "device", device_id, DeviceNotFound)

    async def find(self, principal: Principal, ref: str) -> Device:
        """A device by its id or, failing that, its serial number."""
        try:
            device_id = uuid.UUID(ref)
        except ValueError:
            device_id = None
        if device_id is not None:
            return await self.get(principal, device_id)
        device = await self.devices.by_serial(principal.workspace_id, ref)
        if device is None:
            raise DeviceNotFound(f"No device with id or serial number {ref!r}.")
        return device

    async def page(
        self, principal: Principal, flt: DeviceFilter, *, limit: int, offset: int, sort: str
    ) -> tuple[Sequence[Device], int]:
        return await self.devices.page(
            principal.workspace_id, flt, limit=limit, offset=offset, sort=sort
        )

    async def recent_status_changes(
        self, principal: Principal, limit: int
    ) -> list[StatusChangeRead]:
        """The workspace's latest lifecycle status changes (from the device log)."""
        rows = await self.logs.status_changes(principal.workspace_id, limit)
        return [
            StatusChangeRead(
                device_id=log.device_id, device_name=name,
                old_status=DeviceStatus(log.old_status or ""),
                new_status=DeviceStatus(log.new_status or ""),
                action=log.action, actor=log.actor, at=log.created_at,
            )
            for log, name in rows  # both statuses are set: the query asks for them
        ]  # fmt: skip

    async def _check_serial(
        self, workspace_id: uuid.UUID, serial: str | None, exclude: uuid.UUID | None = None
    ) -> None:
        if serial is None:
            return
        other = await self.devices.by_serial(workspace_id, serial)
        if other is not None and other.id != exclude:
            raise DuplicateSerial(
                f"Serial number {serial!r} is already used by device {other.id}.",
                existing_device_id=str(other.id),
            )

    async def create(self, principal: Principal, data: DeviceCreate) -> Device:
        await self._check_serial(principal.workspace_id, data.serial_number)
        device = Device(
            workspace_id=principal.workspace_id,
            status=DeviceStatus.in_stock,
            **data.model_dump(),
        )
        self.devices.add(device)
        await flush_guarded(self.uow)
        self.logs.record(
            device,
            Action.created,
            principal,
            new_status=device.status,
            changes=diff({}, snapshot(device)),
        )
        self.uow.emit(events.device_event(events.DEVICE_CREATED, device))
        return device

    async def update(
        self, principal: Principal, device_id: uuid.UUID, data: DeviceUpdate
    ) -> Device:
        return await self.update_loaded(principal, await self.get(principal, device_id), data)

    async def update_loaded(
        self, principal: Principal, device: Device, data: DeviceUpdate
    ) -> Device:
        """Update a device the caller already loaded from this workspace (bulk import)."""
        assert device.workspace_id == principal.workspace_id
        wanted = data.changes()
        if "serial_number" in wanted and wanted["serial_number"] != device.serial_number:
            await self._check_serial(device.workspace_id, wanted["serial_number"], device.id)
        before = snapshot(device)
        changes = diff(before, wanted)
        if not changes:
            return device
        for key in changes:
            setattr(device, key, wanted[key])
        device.updated_at = utcnow()
        await flush_guarded(self.uow)
        self.logs.record(
            device,
            Action.updated,
            principal,
            old_status=device.status,
            new_status=device.status,
            changes=changes,
        )
        self.uow.emit(events.device_event(events.DEVICE_UPDATED, device, changed=sorted(changes)))
        return device

    async def firmware_reported(self, device_id: uuid.UUID, version: str) -> Device | None:
        """The device says it runs ``version``: kept, and logged (by the device) when it
        changed. None for an unknown device."""
        device = await self.uow.session.get(Device, device_id)
        if device is None or device.firmware_version == version:
            return device
        changes = diff({"firmware_version": device.firmware_version}, {"firmware_version": version})
        device.firmware_version = version
        device.updated_at = utcnow()
        await flush_guarded(self.uow)
        self.logs.record(
            device, Action.updated, None, old_status=device.status, new_status=device.status,
            changes=changes, notes="reported by the device", actor_label=f"device:{device.id}",
        )  # fmt: skip
        self.uow.emit(events.device_event(events.DEVICE_UPDATED, device, changed=sorted(changes)))
        return device

    async def purge(self, principal: Principal, device_id: uuid.UUID) -> None:
        """Delete the device for good (admins). Its audit trail is kept; the database
        deletes the rest: its series by cascade, their readings and rollups by trigger."""
        device = await self.get(principal, device_id)
        self.logs.record(
            device,
            Action.purged,
            principal,
            old_status=device.status,
            changes=diff(snapshot(device), dict.fromkeys(SNAPSHOT_FIELDS)),
        )
        self.uow.emit(events.device_event(events.DEVICE_DELETED, device))
        await self.tokens.delete_for_device(device.id)
        await self.devices.delete(device)
        await flush_guarded(self.uow)

    # --- agent tokens ---------------------------------------------------------------

    async def issue_token(
        self, principal: Principal, device_id: uuid.UUID, data: AgentTokenCreate
    ) -> AgentTokenCreated:
        device = await self.get(principal, device_id)
        if device.status == DeviceStatus.retired:
            raise DeviceRetired("A retired device cannot get new credentials.")
        issued = credentials.issue(credentials.DEVICE_TOKEN_PREFIX)
        token = AgentToken(
            device_id=device.id,
            workspace_id=device.workspace_id,
            name=data.name,
            prefix=issued.prefix,
            token_digest=issued.digest,
            created_by=principal.user_id,
            expires_at=data.expires_at,
            mqtt=data.mqtt,
        )
        self.tokens.add(token)
        await self.uow.session.flush()
        self.logs.record(
            device, Action.token_issued, principal, notes=f"token {token.prefix}… ({token.id})"
        )
        return AgentTokenCreated(
            id=token.id,
            token=issued.secret,
            created_at=token.created_at,
            device_id=device.id,
            prefix=token.prefix,
            expires_at=token.expires_at,
            mqtt=token.mqtt,
        )

    async def list_tokens(
        self, principal: Principal, device_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[AgentToken], int]:
        device = await self.get(principal, device_id)
        return await self.tokens.page(device.id, limit=limit, offset=offset)

    async def revoke_token(
        self, principal: Principal, device_id: uuid.UUID, token_id: uuid.UUID
    ) -> AgentToken:
        device = await self.get(principal, device_id)
        token = await self.tokens.get(device.id, token_id)
        if token is None:
            raise DeviceNotFound(f"No token {token_id} on this device.")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            self.uow.emit(
                credentials_changed(device.workspace_id, "device_token_revoked", device.id)
            )
            self.logs.record(
                device, Action.token_revoked, principal, notes=f"token {token.prefix}… ({token.id})"
            )
            await self.uow.session.flush()
        return token

    async def authenticate_device(self, token: str) -> DevicePrincipal:
        """A digest lookup on a unique index and a constant-time compare; no slow hash.
        Also notes the token's last use (at most once a minute), for the caller to commit."""
        found = (await self.authenticate_devices([token]))[0]
        if isinstance(found, Unauthorized):
            raise found
        return found

    async def authenticate_devices(
        self, tokens: Sequence[str]
    ) -> list[DevicePrincipal | Unauthorized]:
        """``authenticate_device`` for many tokens at once (one query): for each, its
        principal or the reason it is refused."""
        prefix = credentials.DEVICE_TOKEN_PREFIX
        digests = {t: credentials.digest(t) for t in tokens if t.startswith(prefix)}
        found = await self.tokens.by_digests(list(set(digests.values())))
        now = utcnow()
        out: list[DevicePrincipal | Unauthorized] = []
        stale: set[uuid.UUID] = set()
        for token in tokens:
            digest = digests.get(token)
            if digest is None:
                out.append(Unauthorized("Not a device token."))
                continue
            hit = found.get(digest)
            if hit is None or not credentials.matches(token, hit[0].token_digest):
                out.append(Unauthorized("Invalid device token."))
                continue
            agent_token, device = hit
            if agent_token.revoked_at is not None:
                out.append(Unauthorized("This device token has been revoked."))
            elif agent_token.expires_at is not None and agent_token.expires_at <= now:
                out.append(Unauthorized("This device token has expired."))
            elif device.status == DeviceStatus.retired:
                out.append(Unauthorized("This device is retired."))
            else:
                if usage_is_stale(agent_token.last_used_at, now):
                    stale.add(agent_token.id)
                out.append(
                    DevicePrincipal(
                        device.id, device.workspace_id, agent_token.id, device, agent_token.mqtt
                    )
                )
        if stale:
            await self.tokens.touch(stale, now)  # the caller commits
        return out
