"""The workspace's recent lifecycle status changes, read from the device log."""

from __future__ import annotations

import uuid

from conftest import Actor, Factory, create_device
from fieldwatch.auth.principal import Principal
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.service import DeviceService
from fieldwatch.runtime import Runtime


def principal_of(actor: Actor) -> Principal:
    return Principal("user", actor.workspace_id, actor.workspace, actor.role, actor.email,
                     user_id=actor.user_id)  # fmt: skip


async def test_recent_status_changes_are_the_logs_status_rows_newest_first(
    client, runtime: Runtime, admin: Actor, operator: Actor, factory: Factory
):
    a = await create_device(client, admin, name="a")
    b = await create_device(client, admin, name="b")
    other = await factory.user("admin", workspace="globex")
    theirs = await create_device(client, other, name="theirs")
    steps = [
        (admin, a, "reserve", None),
        (operator, b, "deploy", {"location": "Site 9"}),
        (operator, a, "retire", None),
        (other, theirs, "reserve", None),
    ]
    for who, device, action, body in steps:
        r = await client.put(
            f"/api/v1/devices/{device['id']}/{action}", json=body, headers=who.headers
        )
        assert r.status_code == 200, r.text
    r = await client.patch(  # an update without a status change: not listed
        f"/api/v1/devices/{b['id']}", json={"name": "b2"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    r = await client.delete(f"/api/v1/devices/{a['id']}?purge=true", headers=admin.headers)
    assert r.status_code == 204, r.text  # the log outlives the device

    async with runtime.uow() as uow:
        changes = await DeviceService(uow).recent_status_changes(principal_of(admin), 10)
        got = [(c.device_id, c.old_status, c.new_status, c.actor) for c in changes]
        assert got == [
            (uuid.UUID(a["id"]), DeviceStatus.reserved, DeviceStatus.retired,
             f"user:{operator.email}"),
            (uuid.UUID(b["id"]), DeviceStatus.in_stock, DeviceStatus.deployed,
             f"user:{operator.email}"),
            (uuid.UUID(a["id"]), DeviceStatus.in_stock, DeviceStatus.reserved,
             f"user:{admin.email}"),
        ]  # fmt: skip
        assert changes[1].device_name == "b2"  # the device's name now
        assert changes[0].device_name is None and changes[2].device_name is None
        assert changes[0].action == "retired" and changes[0].at >= changes[1].at
        two = await DeviceService(uow).recent_status_changes(principal_of(admin), 2)
        assert [c.new_status for c in two] == [DeviceStatus.retired, DeviceStatus.deployed]
