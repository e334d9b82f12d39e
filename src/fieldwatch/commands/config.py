"""Rules of device configuration: the desired document and its versions, what was pushed
to the device and what it reports applied."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.commands import events
from fieldwatch.commands.models import ConfigVersion, DeviceConfig
from fieldwatch.commands.repository import ConfigRepository
from fieldwatch.commands.schemas import ConfigDifference, ConfigRead
from fieldwatch.commands.service import live_device
from fieldwatch.core.clock import utcnow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.service import DeviceService


def config_difference(
    desired: dict[str, Any], reported: dict[str, Any] | None
) -> list[ConfigDifference]:
    """Leaf-by-leaf difference, with dotted paths into nested objects."""
    out: list[ConfigDifference] = []

    def walk(path: str, want: Any, have: Any, present: bool) -> None:
        if isinstance(want, dict) and isinstance(have, dict):
            for key in sorted(set(want) | set(have), key=str):
                sub = f"{path}.{key}" if path else str(key)
                if key not in want:
                    out.append(ConfigDifference(path=sub, reported=have[key], change="removed"))
                else:
                    walk(sub, want[key], have.get(key), key in have)
        elif not present:
            out.append(ConfigDifference(path=path, desired=want, change="added"))
        elif want != have:
            out.append(ConfigDifference(path=path, desired=want, reported=have, change="changed"))

    walk("", desired, reported or {}, True)
    return out


class ConfigService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.configs = ConfigRepository(uow.session)

    async def put(
        self, principal: Principal, device_id: uuid.UUID, document: dict[str, Any]
    ) -> DeviceConfig:
        """Set the desired configuration; the version goes up unless nothing changed."""
        device = await live_device(self.uow, principal, device_id)
        config = await self.configs.get(device.id, for_update=True)
        now = utcnow()
        if config is None:
            config = DeviceConfig(
                device_id=device.id, workspace_id=device.workspace_id, desired={},
                desired_version=0, desired_at=now,
            )  # fmt: skip
            self.configs.add(config)
        elif config.desired == document and config.desired_version > 0:
            return config
        config.desired = document
        config.desired_version += 1
        config.desired_at = now
        config.desired_by = principal.actor
        version = ConfigVersion(
            device_id=device.id, version=config.desired_version, document=document,
            created_at=now, created_by=principal.actor,
        )  # fmt: skip
        self.configs.add(version)
        await self.uow.session.flush()
        self.uow.emit(events.config_event(events.CONFIG_UPDATED, config))
        return config

    async def read(self, principal: Principal, device_id: uuid.UUID) -> ConfigRead:
        device = await DeviceService(self.uow).get(principal, device_id)
        config = await self.configs.get(device.id)
        if config is None:
            return ConfigRead(
                device_id=device.id, desired={}, desired_version=0, desired_at=None,
                reported=None, reported_version=None, reported_at=None, pushed_version=None,
                pushed_at=None, in_sync=True, difference=[],
            )  # fmt: skip
        reported = None
        if config.reported_version:
            row = await self.configs.version(device.id, config.reported_version)
            reported = row.document if row is not None else None
        return ConfigRead(
            device_id=device.id,
            desired=config.desired,
            desired_version=config.desired_version,
            desired_at=config.desired_at,
            reported=reported,
            reported_version=config.reported_version,
            reported_at=config.reported_at,
            pushed_version=config.pushed_version,
            pushed_at=config.pushed_at,
            in_sync=config.reported_version == config.desired_version,
            difference=config_difference(config.desired, reported),
        )

    async def to_push(self, device_id: uuid.UUID) -> tuple[DeviceConfig, ConfigVersion] | None:
        """The desired configuration, if the device has not reported it applied."""
        config = await self.configs.get(device_id)
        if config is None or config.desired_version == 0:
            return None
        if (config.reported_version or 0) >= config.desired_version:
            return None
        version = await self.configs.version(device_id, config.desired_version)
        return (config, version) if version is not None else None

    async def to_push_for(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ConfigVersion]:
        """``to_push`` for many devices at once (devices that just connected)."""
        return await self.configs.unapplied(device_ids)

    async def mark_pushed(self, device_id: uuid.UUID, version: int) -> None:
        await self.configs.mark_pushed(device_id, version, utcnow())

    async def applied(self, device_id: uuid.UUID, version: int) -> DeviceConfig | None:
        """The device applied ``version``; None if that is not news (older, unknown)."""
        config = await self.configs.report(device_id, version, utcnow())
        if config is not None:
            self.uow.emit(events.config_event(events.CONFIG_APPLIED, config, version=version))
        return config
