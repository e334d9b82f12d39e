from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import Actor, create_device


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def recent(seconds_ago: float = 0) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago)


async def device_with_token(client, actor: Actor, **fields: Any) -> tuple[dict, dict[str, str]]:
    device = await create_device(client, actor, **fields)
    r = await client.post(f"/api/v1/devices/{device['id']}/tokens", headers=actor.headers)
    return device, {"Authorization": f"Bearer {r.json()['token']}"}
