"""One lifecycle action on several devices (``InventoryService.perform_many``): an
outcome per device, refused devices left as they were, the others changed and logged."""

from __future__ import annotations

import uuid

import pytest

from conftest import Actor, Factory, create_device
from fieldwatch.auth.principal import Principal
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.devices.lifecycle import Action, DeviceStatus
from fieldwatch.inventory.service import MAX_BULK, InventoryService
from fieldwatch.runtime import Runtime


def principal_of(actor: Actor) -> Principal:
    return Principal(
        kind="user", workspace_id=actor.workspace_id, workspace_name=actor.workspace,
        role=actor.role, label=actor.email, user_id=actor.user_id,
    )  # fmt: skip


async def test_a_bulk_recall_reports_each_device(
    client, operator: Actor, factory: Factory, runtime: Runtime
):
    deployed = await create_device(client, operator, name="Out", serial_number="B-1")
    retired = await create_device(client, operator, name="Gone", serial_number="B-2")
    in_stock = await create_device(client, operator, name="Home", serial_number="B-3")
    other = await create_device(client, await factory.user("admin", "elsewhere"), name="Theirs")
    h = operator.headers
    put = client.put
    assert (await put(f"/api/v1/devices/{deployed['id']}/deploy", json={"location": "Site 1"},
                      headers=h)).status_code == 200  # fmt: skip
    assert (await put(f"/api/v1/devices/{retired['id']}/retire", headers=h)).status_code == 200
    ids = [uuid.UUID(d["id"]) for d in (deployed, retired, in_stock, other, deployed)]

    async with runtime.uow() as uow:
        outcomes = await InventoryService(uow).perform_many(
            principal_of(operator), ids, Action.recalled, location="Warehouse A", notes="bulk"
        )
        await uow.commit()

    assert [o.device_id for o in outcomes] == ids[:4]  # in order, the repeat once
    back, final, home, theirs = outcomes
    assert back.done and back.status == DeviceStatus.in_stock and back.name == "Out"
    assert not final.done and final.status == DeviceStatus.retired
    assert final.serial_number == "B-2" and final.allowed_statuses == []
    assert final.detail and "retired" in final.detail
    assert not home.done and home.status == DeviceStatus.in_stock
    assert home.detail and "in_stock cannot become in_stock" in home.detail  # as the API says
    assert home.allowed_statuses == [DeviceStatus.reserved, DeviceStatus.deployed,
                                     DeviceStatus.maintenance, DeviceStatus.retired]  # fmt: skip
    assert not theirs.done and theirs.name is None and theirs.status is None
    assert theirs.detail == f"No device {other['id']} in this workspace."

    r = await client.get(f"/api/v1/devices/{deployed['id']}", headers=h)
    assert r.json()["status"] == "in_stock" and r.json()["location"] == "Warehouse A"
    logs = (await client.get(f"/api/v1/devices/{deployed['id']}/logs", headers=h)).json()
    assert logs["items"][0]["action"] == "recalled" and logs["items"][0]["notes"] == "bulk"
    logs = (await client.get(f"/api/v1/devices/{in_stock['id']}/logs", headers=h)).json()
    assert [row["action"] for row in logs["items"]] == ["created"]  # refused: not logged


async def test_a_bulk_action_checks_what_it_is_given(operator: Actor, runtime: Runtime):
    principal = principal_of(operator)
    async with runtime.uow() as uow:
        service = InventoryService(uow)
        with pytest.raises(ValidationFailed, match="Select at least one"):
            await service.perform_many(principal, [], Action.retired)
        with pytest.raises(ValidationFailed, match="needs the location"):
            await service.perform_many(principal, [uuid.uuid4()], Action.deployed, location=" ")
        too_many = [uuid.uuid4() for _ in range(MAX_BULK + 1)]
        with pytest.raises(ValidationFailed, match="at most"):
            await service.perform_many(principal, too_many, Action.retired)
