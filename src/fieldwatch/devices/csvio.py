"""CSV export of the registry (the same columns an import reads). Lists (capabilities,
tags) are one cell, their items separated by ``;``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.auth.principal import Principal
from fieldwatch.devices.models import Device
from fieldwatch.devices.repository import DeviceFilter, DeviceRepository

EXPORT_COLUMNS = [
    "id", "name", "type", "serial_number", "manufacturer", "model", "firmware_version",
    "hardware_version", "capabilities", "tags", "specs", "location", "status", "purchase_date",
    "deploy_date", "last_maintenance", "last_seen", "created_at", "updated_at",
]  # fmt: skip


def _cell(device: Device, column: str) -> str:
    value = getattr(device, column)
    if value is None:
        return ""
    if column in ("capabilities", "tags"):
        return ";".join(value)
    if column == "specs":
        return json.dumps(value, separators=(",", ":"), sort_keys=True) if value else ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _rows(devices: Sequence[Device]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for d in devices:
        writer.writerow([_cell(d, c) for c in EXPORT_COLUMNS])
    return buf.getvalue()


async def export_csv(
    sessionmaker: async_sessionmaker[AsyncSession], principal: Principal, flt: DeviceFilter
) -> AsyncIterator[str]:
    """Stream the export in batches with its own session (it outlives the request)."""
    yield ",".join(EXPORT_COLUMNS) + "\n"
    async with sessionmaker() as session:
        async for batch in DeviceRepository(session).stream(principal.workspace_id, flt):
            yield _rows(batch)
