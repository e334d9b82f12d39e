"""Device groups: static members, dynamic filters, the group's devices, the group filter
of the device list, and the SQL that other domains target groups with."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import Actor, Factory, create_device, problem
from fieldwatch.core.errors import ValidationFailed
from fieldwatch.devices.groups import GroupService
from fieldwatch.devices.models import Device, DeviceGroup

URL = "/api/v1/device-groups"


async def make_group(client: httpx.AsyncClient, who: Actor, **body: Any) -> dict[str, Any]:
    r = await client.post(URL, json={"name": "G", **body}, headers=who.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def fleet(client: httpx.AsyncClient, who: Actor) -> dict[str, dict[str, Any]]:
    """Five devices that differ in each field a dynamic filter reads."""
    specs = {
        "A": {"type": "pump", "firmware_version": "1.0", "hardware_version": "r1",
              "tags": ["roof", "north"]},
        "B": {"type": "pump", "firmware_version": "1.1", "hardware_version": "r2",
              "tags": ["roof"]},
        "C": {"type": "meter", "firmware_version": "1.0", "hardware_version": "r1",
              "tags": ["north"]},
        "D": {"type": "meter", "firmware_version": "2.0", "hardware_version": "r2"},
        "E": {"type": "pump", "firmware_version": "2.0", "hardware_version": "r1"},
    }  # fmt: skip
    made = {n: await create_device(client, who, name=n, **f) for n, f in specs.items()}
    for name, where in (("A", "Site 1"), ("B", "Site 2"), ("C", "Site 1")):
        r = await client.put(f"/api/v1/devices/{made[name]['id']}/deploy",
                             json={"location": where}, headers=who.headers)  # fmt: skip
        assert r.status_code == 200, r.text
    r = await client.put(f"/api/v1/devices/{made['D']['id']}/retire", headers=who.headers)
    assert r.status_code == 200, r.text
    return made


async def group_names(client: httpx.AsyncClient, who: Actor, group_id: str, **params) -> list[str]:
    r = await client.get(f"{URL}/{group_id}/devices", params=params, headers=who.headers)
    assert r.status_code == 200, r.text
    return [d["name"] for d in r.json()["items"]]


async def test_each_dynamic_filter_field_selects_its_devices(client, operator: Actor):
    await fleet(client, operator)
    cases = [
        ({"type": "pump"}, ["A", "B", "E"]),
        ({"location": "Site 1"}, ["A", "C"]),
        ({"status": "deployed"}, ["A", "B", "C"]),
        ({"status": ["retired", "in_stock"]}, ["D", "E"]),
        ({"firmware_version": "1.0"}, ["A", "C"]),
        ({"firmware_version": ["1.1", "2.0"]}, ["B", "D", "E"]),
        ({"hardware_version": "r2"}, ["B", "D"]),
        ({"tags": ["roof"]}, ["A", "B"]),
        ({"tags": ["roof", "north"]}, ["A"]),
        ({"type": "pump", "firmware_version": ["1.0", "2.0"], "hardware_version": "r1"},
         ["A", "E"]),
    ]  # fmt: skip
    for n, (flt, expected) in enumerate(cases):
        group = await make_group(client, operator, name=f"g{n}", kind="dynamic", filter=flt)
        assert group["member_count"] is None and group["kind"] == "dynamic"
        assert await group_names(client, operator, group["id"]) == expected, flt


async def test_a_dynamic_group_follows_the_registry(client, operator: Actor):
    group = await make_group(client, operator, kind="dynamic", filter={"tags": ["roof"]})
    assert await group_names(client, operator, group["id"]) == []
    device = await create_device(client, operator, name="Later", tags=["roof"])
    assert await group_names(client, operator, group["id"]) == ["Later"]
    await client.patch(f"/api/v1/devices/{device['id']}", json={"tags": []},
                       headers=operator.headers)  # fmt: skip
    assert await group_names(client, operator, group["id"]) == []


async def test_bad_filters_and_bodies_are_422(client, operator: Actor):
    bad = [
        {"kind": "dynamic", "filter": {"colour": "red"}},
        {"kind": "dynamic", "filter": {"status": "lost"}},
        {"kind": "dynamic", "filter": {}},
        {"kind": "dynamic"},
        {"kind": "static", "filter": {"type": "pump"}},
        {"kind": "dynamic", "filter": {"tags": ["a", "a"]}},
        {"kind": "both"},
        {"name": ""},
    ]
    for body in bad:
        r = await client.post(URL, json={"name": "G", **body}, headers=operator.headers)
        assert problem(r, 422)["errors"], body
    r = await client.post(URL, json={"name": "G", "kind": "dynamic", "filter": {"colour": "red"}},
                          headers=operator.headers)  # fmt: skip
    assert problem(r, 422)["errors"][0]["field"] == "filter.colour"


async def test_crud_names_unique_per_workspace(client, operator: Actor, factory: Factory):
    group = await make_group(client, operator, name="Roof", description="On roofs")
    assert (group["kind"], group["member_count"], group["filter"]) == ("static", 0, None)
    assert group["created_by"].endswith(operator.email)
    body = problem(await client.post(URL, json={"name": "Roof"}, headers=operator.headers), 409)
    assert body["existing_group_id"] == group["id"]
    other = await factory.user("operator", workspace="globex")
    assert (await make_group(client, other, name="Roof"))["workspace_id"] != group["workspace_id"]
    second = await make_group(client, operator, name="Cellar")
    r = await client.patch(f"{URL}/{second['id']}", json={"name": "Roof"}, headers=operator.headers)
    problem(r, 409)
    r = await client.patch(f"{URL}/{group['id']}", json={"name": "Roofs", "description": None},
                           headers=operator.headers)  # fmt: skip
    assert (r.json()["name"], r.json()["description"]) == ("Roofs", None)
    r = await client.patch(f"{URL}/{group['id']}", json={"kind": "dynamic"},
                           headers=operator.headers)  # fmt: skip
    problem(r, 422)
    r = await client.patch(f"{URL}/{group['id']}", json={"filter": {"type": "x"}},
                           headers=operator.headers)  # fmt: skip
    assert "static group" in problem(r, 422)["detail"]
    listed = (await client.get(URL, headers=operator.headers)).json()
    assert [g["name"] for g in listed["items"]] == ["Cellar", "Roofs"] and listed["total"] == 2
    r = await client.delete(f"{URL}/{group['id']}", headers=operator.headers)
    assert r.status_code == 204
    problem(await client.get(f"{URL}/{group['id']}", headers=operator.headers), 404)


async def test_a_dynamic_groups_filter_can_be_replaced(client, operator: Actor):
    await fleet(client, operator)
    group = await make_group(client, operator, kind="dynamic", filter={"type": "pump"})
    r = await client.patch(f"{URL}/{group['id']}", json={"filter": {"type": "meter"}},
                           headers=operator.headers)  # fmt: skip
    assert r.json()["filter"] == {"type": "meter"}
    assert await group_names(client, operator, group["id"]) == ["C", "D"]
    r = await client.patch(f"{URL}/{group['id']}", json={"filter": None}, headers=operator.headers)
    problem(r, 422)


async def test_static_members_refuse_other_workspaces_devices_per_device(
    client, operator: Actor, factory: Factory
):
    mine = [await create_device(client, operator, name=n) for n in ("M1", "M2")]
    other = await factory.user("operator", workspace="globex")
    theirs = await create_device(client, other, name="T1")
    group = await make_group(client, operator)
    unknown = str(uuid.uuid4())
    ids = [mine[0]["id"], theirs["id"], unknown, mine[1]["id"]]
    r = await client.post(f"{URL}/{group['id']}/members", json={"device_ids": ids},
                          headers=operator.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 2
    assert [x["outcome"] for x in r.json()["results"]] == [
        "added", "not_found", "not_found", "added"]  # fmt: skip
    r = await client.post(f"{URL}/{group['id']}/members", json={"device_ids": [mine[0]["id"]]},
                          headers=operator.headers)  # fmt: skip
    assert r.json() == {"added": 0, "results": [
        {"device_id": mine[0]["id"], "outcome": "already_member"}]}  # fmt: skip
    assert (await client.get(f"{URL}/{group['id']}", headers=operator.headers)).json()[
        "member_count"] == 2  # fmt: skip
    assert await group_names(client, operator, group["id"]) == ["M1", "M2"]
    member = f"{URL}/{group['id']}/members/{mine[0]['id']}"
    r = await client.delete(member, headers=operator.headers)
    assert r.status_code == 204
    assert await group_names(client, operator, group["id"]) == ["M2"]
    r = await client.delete(member, headers=operator.headers)
    problem(r, 404)
    dynamic = await make_group(client, operator, name="D", kind="dynamic", filter={"type": "x"})
    r = await client.post(f"{URL}/{dynamic['id']}/members", json={"device_ids": [mine[0]["id"]]},
                          headers=operator.headers)  # fmt: skip
    problem(r, 409)
    problem(await client.post(f"{URL}/{group['id']}/members", json={"device_ids": []},
                              headers=operator.headers), 422)  # fmt: skip


async def test_another_workspaces_group_is_404_and_viewers_only_read(
    client, operator: Actor, viewer: Actor, factory: Factory
):
    other = await factory.user("operator", workspace="globex")
    theirs = await make_group(client, other, name="Theirs")
    gid = theirs["id"]
    h = operator.headers
    for r in (
        await client.get(f"{URL}/{gid}", headers=h),
        await client.get(f"{URL}/{gid}/devices", headers=h),
        await client.patch(f"{URL}/{gid}", json={"name": "x"}, headers=h),
        await client.delete(f"{URL}/{gid}", headers=h),
        await client.post(f"{URL}/{gid}/members", json={"device_ids": [gid]}, headers=h),
        await client.get("/api/v1/devices", params={"group": gid}, headers=h),
    ):
        problem(r, 404)
    mine = await make_group(client, operator, name="Mine")
    assert (await client.get(f"{URL}/{mine['id']}", headers=viewer.headers)).status_code == 200
    assert (await client.get(URL, headers=viewer.headers)).json()["total"] == 1
    problem(await client.post(URL, json={"name": "V"}, headers=viewer.headers), 403)
    problem(await client.delete(f"{URL}/{mine['id']}", headers=viewer.headers), 403)
    problem(await client.patch(f"{URL}/{mine['id']}", json={"name": "x"},
                               headers=viewer.headers), 403)  # fmt: skip
    problem(await client.get(URL), 401)


async def test_the_device_list_filters_by_group_with_other_filters(client, operator: Actor):
    made = await fleet(client, operator)
    static = await make_group(client, operator, name="S")
    ids = [made[n]["id"] for n in ("A", "C", "D")]
    await client.post(f"{URL}/{static['id']}/members", json={"device_ids": ids},
                      headers=operator.headers)  # fmt: skip
    dynamic = await make_group(client, operator, name="Dyn", kind="dynamic",
                               filter={"tags": ["north"]})  # fmt: skip

    async def names(**params: Any) -> list[str]:
        r = await client.get("/api/v1/devices", params={"sort": "name", **params},
                             headers=operator.headers)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["total"] == len(r.json()["items"])
        return [d["name"] for d in r.json()["items"]]

    assert await names(group=static["id"]) == ["A", "C", "D"]
    assert await names(group=static["id"], type="meter") == ["C", "D"]
    assert await names(group=static["id"], status="deployed", tag="roof") == ["A"]
    assert await names(group=dynamic["id"]) == ["A", "C"]
    assert await names(group=dynamic["id"], type="pump") == ["A"]
    export = await client.get("/api/v1/devices/export", params={"group": static["id"]},
                              headers=operator.headers)  # fmt: skip
    assert len(export.text.splitlines()) == 4


async def test_the_sql_for_other_domains_is_workspace_scoped(
    client, runtime, operator: Actor, factory: Factory
):
    await fleet(client, operator)
    other = await factory.user("operator", workspace="globex")
    await create_device(client, other, name="Z", type="pump")
    group = await make_group(client, operator, kind="dynamic", filter={"type": "pump"})
    async with runtime.uow() as uow:
        loaded = await uow.session.get(DeviceGroup, uuid.UUID(group["id"]))
        assert loaded is not None
        ids = set(await uow.session.scalars(GroupService.device_ids_select(loaded)))
        names = set(await uow.session.scalars(select(Device.name).where(Device.id.in_(ids))))
        assert names == {"A", "B", "E"}
        principal = type("P", (), {"workspace_id": operator.workspace_id})()
        clause = GroupService.resolve_filter(principal, {"status": "deployed", "tags": "north"})
        found = set(await uow.session.scalars(select(Device.name).where(clause)))
        assert found == {"A", "C"}
        with pytest.raises(ValidationFailed) as refused:
            GroupService.resolve_filter(principal, {"colour": "red"})
        assert refused.value.extra["errors"][0]["field"] == "colour"


async def test_a_groups_devices_page_and_a_purged_member_leaves(
    client, operator: Actor, admin: Actor
):
    made = [await create_device(client, operator, name=f"N{i}") for i in range(5)]
    group = await make_group(client, operator)
    await client.post(f"{URL}/{group['id']}/members", json={"device_ids": [d["id"] for d in made]},
                      headers=operator.headers)  # fmt: skip
    r = await client.get(f"{URL}/{group['id']}/devices", params={"limit": 2, "offset": 2,
                         "sort": "-name"}, headers=operator.headers)  # fmt: skip
    page = r.json()
    assert (page["total"], [d["name"] for d in page["items"]]) == (5, ["N2", "N1"])
    assert {"connectivity", "tags", "status"} <= set(page["items"][0])
    assert admin.workspace_id == operator.workspace_id
    r = await client.delete(f"/api/v1/devices/{made[0]['id']}?purge=true", headers=admin.headers)
    assert r.status_code == 204, r.text
    got = (await client.get(f"{URL}/{group['id']}", headers=operator.headers)).json()
    assert got["member_count"] == 4
    assert await group_names(client, operator, group["id"]) == ["N1", "N2", "N3", "N4"]


async def test_wrong_types_in_a_filter_are_422(client, operator: Actor):
    for flt in ({"tags": [None]}, {"tags": "roof", "status": [1]}, {"firmware_version": [""]},
                {"type": ["a"]}, {"tags": []}):  # fmt: skip
        r = await client.post(URL, json={"name": "G", "kind": "dynamic", "filter": flt},
                              headers=operator.headers)  # fmt: skip
        assert problem(r, 422)["errors"][0]["field"].startswith("filter."), flt
    group = await make_group(client, operator, kind="dynamic", filter={"tags": "roof"})
    assert group["filter"] == {"tags": ["roof"]}
