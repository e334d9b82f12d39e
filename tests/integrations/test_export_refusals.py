"""What a refused health export upload says about its target device: none named, an id
that is not one, a device that takes no such export (and why)."""

from __future__ import annotations

import uuid

from conftest import create_device, problem
from export_helpers import apple_xml, upload
from fieldwatch.integrations.models import DeviceSync
from fieldwatch.runtime import Runtime

EXPORT = apple_xml([])


async def refusal(client, actor, device_id: str | None, kind: str = "apple_health") -> str:
    body = problem(await upload(client, actor, kind, device_id, "export.xml", EXPORT), 422)
    assert [e["field"] for e in body["errors"]] == ["device_id"]
    assert body["errors"][0]["message"] == body["detail"]
    return str(body["detail"])


async def test_the_target_device_is_named_in_the_refusal(client, operator,
                                                         runtime: Runtime) -> None:  # fmt: skip
    assert (await refusal(client, operator, None)).startswith("Name the target device")
    assert (await refusal(client, operator, "  ")).startswith("Name the target device")
    bad = await refusal(client, operator, "not-a-uuid")
    assert bad == "device_id 'not-a-uuid' is not a valid device id: a device's id is a UUID."

    sensor = (await create_device(client, operator, name="Boiler", type="sensor"))["id"]
    assert await refusal(client, operator, sensor) == (
        f"Device {sensor} takes no Apple Health exports: register it with integration_type "
        "'apple_health' (or give it a type starting with apple_health).")  # fmt: skip
    phone = (await create_device(client, operator, name="Ana's phone",
                                 type="health_connect_phone"))["id"]  # fmt: skip
    assert await refusal(client, operator, phone) == (
        f"Device {phone} takes no Apple Health exports: it takes Health Connect exports."
    )

    ring = (await create_device(client, operator, name="Ring", type="apple_health_ring"))["id"]
    async with runtime.uow() as uow:
        uow.session.add(DeviceSync(
            device_id=uuid.UUID(ring), workspace_id=operator.workspace_id, connection_id=None,
            connector="oura", vendor_device_id=None, auto_sync=False, interval_minutes=15,
            historical_days=0, sync_status="pending", failures=0,
        ))  # fmt: skip
        await uow.commit()
    assert await refusal(client, operator, ring) == (
        f"Device {ring} takes no Apple Health exports: its data comes from Oura API v2."
    )
