"""The devices that went offline recently (the overview's list) and the online devices
per lifecycle status (the stats' cross-table), from presence."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from conftest import Actor, Factory, create_device
from fieldwatch.auth.principal import Principal
from fieldwatch.monitoring.service import MonitoringService
from fieldwatch.runtime import Runtime


def principal_of(actor: Actor) -> Principal:
    return Principal("user", actor.workspace_id, actor.workspace, actor.role, actor.email,
                     user_id=actor.user_id)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_went_offline_lists_the_still_offline_devices_of_the_window_latest_first(
    client, runtime: Runtime, admin: Actor, factory: Factory
):
    clock = Clock()
    runtime.presence.clock = clock
    ws = admin.workspace_id
    names = ["first", "second", "third", "back", "long-ago"]
    ids = {n: uuid.UUID((await create_device(client, admin, name=n))["id"]) for n in names}
    other = await factory.user("admin", workspace="globex")
    theirs = uuid.UUID((await create_device(client, other, name="theirs"))["id"])

    await runtime.presence.seen(ws, list(ids.values()))
    await runtime.presence.seen(other.workspace_id, [theirs])
    await runtime.presence.gone(ws, ids["long-ago"], "closed")
    start = clock.now
    for minutes, name in ((40, "first"), (45, "back"), (50, "second"), (55, "third")):
        clock.now = start + timedelta(minutes=minutes)
        await runtime.presence.gone(ws, ids[name], "closed")
    await runtime.presence.gone(other.workspace_id, theirs, "closed")
    await runtime.presence.seen(ws, [ids["back"]])
    clock.now = start + timedelta(minutes=70)  # "long-ago" went offline 70 minutes ago

    async with runtime.uow() as uow:
        service = MonitoringService(uow, runtime.presence)
        items, total = await service.went_offline(principal_of(admin), timedelta(hours=1), 2)
        assert total == 3
        assert [i.name for i in items] == ["third", "second"]
        assert items[0].went_offline_at == start + timedelta(minutes=55)
        assert items[0].last_seen == start  # when it was last heard, not when it went
        items, total = await service.went_offline(principal_of(admin), timedelta(minutes=17), 10)
        assert (total, [i.name for i in items]) == (1, ["third"])


async def test_stats_count_the_online_devices_per_lifecycle_status(
    client, runtime: Runtime, operator: Actor
):
    deployed = await create_device(client, operator, name="deployed")
    idle = await create_device(client, operator, name="idle")
    await create_device(client, operator, name="silent")
    r = await client.put(
        f"/api/v1/devices/{deployed['id']}/deploy", json={"location": "Site 1"},
        headers=operator.headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    await runtime.presence.seen(operator.workspace_id, [uuid.UUID(deployed["id"])])
    await runtime.presence.seen(operator.workspace_id, [uuid.UUID(idle["id"])])
    stats = (await client.get("/api/v1/monitoring/stats", headers=operator.headers)).json()
    assert stats["online_by_status"] == {
        "in_stock": 1, "reserved": 0, "deployed": 1, "maintenance": 0, "retired": 0,
    }  # fmt: skip
    assert stats["devices_by_status"]["in_stock"] == 2
