"""Firmware rollouts over HTTP: validation, dry runs and their reasons, waves from the
canary and the percentages, start/pause/resume/abort and their state checks, figures."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy import update as sa_update

from conftest import Actor, Factory, problem
from fieldwatch.core.clock import utcnow
from fieldwatch.firmware.models import Rollout, RolloutDevice
from fieldwatch.firmware.rollouts.planning import wave_sizes
from fieldwatch.runtime import Runtime
from rollout_helpers import (
    ROLLOUTS,
    act,
    body,
    create,
    make_artifact,
    make_devices,
    open_update,
    rollout_events,
)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"percentages": [25, 50]}, "percentages"),
        ({"percentages": [50, 25, 100]}, "percentages"),
        ({"percentages": [0, 100]}, "percentages"),
        ({"percentages": []}, "percentages"),
        ({"failure_threshold": 1.5}, "failure_threshold"),
        ({"min_finished": 0}, "min_finished"),
        ({"on_failure": "explode"}, "on_failure"),
        ({"rate_per_minute": 0}, "rate_per_minute"),
        ({"canary": -1}, "canary"),
        ({"name": ""}, "name"),
        ({"target": {}}, "target"),
        ({"target": {"device_ids": [], "group_id": str(uuid.uuid4())}}, "target"),
        ({"window_start": "2030-01-02T00:00:00Z", "window_end": "2030-01-01T00:00:00Z"},
         "window_end"),
        ({"window_end": "2030-01-01T00:00:00"}, "window_end"),
        ({"surprise": 1}, "surprise"),
    ],
)  # fmt: skip
async def test_a_bad_body_is_a_422_naming_the_field(
    client, operator: Actor, runtime: Runtime, change: dict[str, Any], field: str
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 1)
    data = {**body(artifact, devices), **change}
    for path in (ROLLOUTS, f"{ROLLOUTS}/dry-run"):
        found = problem(await client.post(path, json=data, headers=operator.headers), 422)
        assert any(e["field"].startswith(field) for e in found["errors"]), found


async def test_unknown_devices_artifact_and_a_past_window_are_422(
    client, operator: Actor, runtime: Runtime, factory: Factory
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    mine = await make_devices(runtime, operator.workspace_id, 1)
    theirs = await make_devices(runtime, await factory.workspace("other"), 1)
    r = await client.post(ROLLOUTS, json=body(artifact, mine + theirs), headers=operator.headers)
    found = problem(r, 422)
    assert found["errors"] == [
        {"field": "target.device_ids", "message": f"no device {theirs[0]}", "type": "unknown"}
    ]
    r = await client.post(ROLLOUTS, json=body(uuid.uuid4(), mine), headers=operator.headers)
    assert problem(r, 422)["errors"][0]["field"] == "artifact_id"
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    r = await client.post(ROLLOUTS, json=body(artifact, mine, window_end=past),
                          headers=operator.headers)  # fmt: skip
    assert problem(r, 422)["errors"][0]["field"] == "window_end"


async def test_a_viewer_reads_but_does_not_create(
    client, operator: Actor, viewer: Actor, runtime: Runtime
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 1)
    problem(await client.post(ROLLOUTS, json=body(artifact, devices), headers=viewer.headers),
            403)  # fmt: skip
    rollout = await create(client, operator, body(artifact, devices))
    r = await client.get(f"{ROLLOUTS}/{rollout['id']}", headers=viewer.headers)
    assert r.status_code == 200 and r.json()["status"] == "draft"
    problem(await client.post(f"{ROLLOUTS}/{rollout['id']}/start", headers=viewer.headers), 403)


@pytest.mark.parametrize(
    ("devices", "canary", "percentages", "sizes"),
    [
        (10, 1, [25, 100], [1, 3, 6]),
        (10, 2, [100], [2, 8]),
        (10, 0, [50, 100], [5, 5]),
        (3, 5, [100], [3]),
        (2, 1, [25, 50, 100], [1, 1]),
        (101, 1, [10, 50, 100], [1, 10, 40, 50]),
        (0, 1, [100], []),
    ],
)
def test_wave_sizes_from_the_canary_and_cumulative_percentages(
    devices: int, canary: int, percentages: list[int], sizes: list[int]
) -> None:
    assert wave_sizes(devices, canary, percentages) == sizes
    assert sum(sizes) == devices


async def test_a_dry_run_names_why_each_device_is_left_out(
    client, operator: Actor, runtime: Runtime
) -> None:
    ws = operator.workspace_id
    await make_artifact(runtime, ws, "1.5.0", security_version=3)
    artifact = await make_artifact(
        runtime, ws, "2.0.0", hardware_versions=["B"], min_from_version="1.0.0",
        security_version=2,
    )  # fmt: skip
    ok = await make_devices(runtime, ws, 3, hardware_version="B")
    cases = {
        "incompatible_type": await make_devices(runtime, ws, 1, type="camera"),
        "incompatible_hardware": await make_devices(runtime, ws, 1, hardware_version="A"),
        "below_min_from_version": await make_devices(runtime, ws, 1, hardware_version="B",
                                                     firmware_version="0.9.0"),
        "already_on_version": await make_devices(runtime, ws, 1, hardware_version="B",
                                                 firmware_version="2.0.0"),
        "anti_rollback": await make_devices(runtime, ws, 1, hardware_version="B",
                                            firmware_version="1.5.0"),
        "retired": await make_devices(runtime, ws, 1, hardware_version="B", status="retired"),
        "not_deployed": await make_devices(runtime, ws, 2, hardware_version="B",
                                           status="in_stock"),
        "open_update": await make_devices(runtime, ws, 1, hardware_version="B"),
    }  # fmt: skip
    await open_update(runtime, ws, cases["open_update"][0], artifact)
    everything = ok + [d for ids in cases.values() for d in ids]
    data = body(artifact, everything, canary=1, percentages=[50, 100])
    r = await client.post(f"{ROLLOUTS}/dry-run", json=data, headers=operator.headers)
    assert r.status_code == 200, r.text
    run = r.json()
    assert (run["targets"], run["included"], run["excluded"]) == (len(everything), 3, 9)
    assert run["waves"] == [{"number": 1, "size": 1}, {"number": 2, "size": 1},
                            {"number": 3, "size": 1}]  # fmt: skip
    assert run["excluded_by_reason"] == {reason: len(ids) for reason, ids in cases.items()}
    by_device = {item["device_id"]: item for item in run["items"]}
    assert run["total"] == len(everything) == len(by_device)
    assert sorted(by_device[str(d)]["wave"] for d in ok) == [1, 2, 3]
    for reason, ids in cases.items():
        for d in ids:
            assert by_device[str(d)]["reason"] == reason and by_device[str(d)]["wave"] is None
            assert by_device[str(d)]["detail"]
    # Paged: the devices to update first (by wave), then those left out.
    r = await client.post(f"{ROLLOUTS}/dry-run?limit=4&offset=2", json=data,
                          headers=operator.headers)  # fmt: skip
    page = r.json()
    assert [i["wave"] for i in page["items"]][:1] == [3]
    assert [i["reason"] is not None for i in page["items"]] == [False, True, True, True]
    assert page["items"] == run["items"][2:6]


async def test_start_snapshots_the_dry_run_into_waves(
    client, operator: Actor, runtime: Runtime
) -> None:
    ws = operator.workspace_id
    artifact = await make_artifact(runtime, ws)
    devices = await make_devices(runtime, ws, 10)
    left_out = await make_devices(runtime, ws, 2, status="maintenance")
    data = body(artifact, devices + left_out, canary=1, percentages=[25, 100])
    run = (await client.post(f"{ROLLOUTS}/dry-run", json=data, headers=operator.headers)).json()
    rollout = await create(client, operator, data)
    assert rollout["status"] == "draft" and rollout["waves"] == []
    assert rollout["max_tries"] == runtime.settings.firmware_max_tries
    again = await client.get(f"{ROLLOUTS}/{rollout['id']}/dry-run", headers=operator.headers)
    assert again.json() == run
    started = await act(client, operator, rollout["id"], "start")
    assert started["status"] == "running" and started["started_at"]
    assert [(w["number"], w["size"], w["status"]) for w in started["waves"]] == [
        (1, 1, "running"), (2, 3, "pending"), (3, 6, "pending"),
    ]  # fmt: skip
    assert started["current_wave"] == 1
    assert started["figures"]["targets"] == 10 and started["figures"]["pending"] == 10
    planned = {i["device_id"]: i["wave"] for i in run["items"] if i["wave"] is not None}
    async with runtime.uow() as uow:
        rows = (await uow.session.scalars(select(RolloutDevice))).all()
    assert {str(r.device_id): r.wave for r in rows} == planned
    assert all(r.released_at is None and r.command_id is None for r in rows)
    r = await client.get(f"{ROLLOUTS}/{rollout['id']}/dry-run", headers=operator.headers)
    assert problem(r, 409)["rollout_status"] == "running"


async def test_state_checks_of_start_pause_resume_abort(
    client, operator: Actor, runtime: Runtime
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 3)
    rid = (await create(client, operator, body(artifact, devices)))["id"]
    for action in ("pause", "resume", "abort"):
        assert (await act(client, operator, rid, action, 409))["rollout_status"] == "draft"
    await act(client, operator, rid, "start")
    await act(client, operator, rid, "start", 409)
    await act(client, operator, rid, "resume", 409)
    paused = await act(client, operator, rid, "pause")
    assert paused["status"] == "paused" and "paused by user:" in paused["status_reason"]
    await act(client, operator, rid, "pause", 409)
    resumed = await act(client, operator, rid, "resume")
    assert resumed["status"] == "running" and resumed["status_reason"] is None
    aborted = await act(client, operator, rid, "abort")
    assert aborted["status"] == "aborted" and aborted["finished_at"]
    assert {w["status"] for w in aborted["waves"]} == {"halted"}
    assert aborted["figures"]["pending"] == 3  # nothing released stays unreleased
    for action in ("start", "pause", "resume", "abort"):
        assert (await act(client, operator, rid, action, 409))["rollout_status"] == "aborted"


async def test_a_start_with_no_eligible_device_is_refused(
    client, operator: Actor, runtime: Runtime
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 2, firmware_version="2.0.0")
    rid = (await create(client, operator, body(artifact, devices)))["id"]
    found = await act(client, operator, rid, "start", 409)
    assert found["excluded_by_reason"] == {"already_on_version": 2}
    assert found["reason"] == "no_eligible_device"
    r = await client.get(f"{ROLLOUTS}/{rid}", headers=operator.headers)
    assert r.json()["status"] == "draft"


async def test_a_draft_whose_window_ended_is_not_started(
    client, operator: Actor, runtime: Runtime
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 2)
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    rid = (await create(client, operator, body(artifact, devices, window_end=soon)))["id"]
    async with runtime.uow() as uow:  # an hour later
        await uow.session.execute(
            sa_update(Rollout).where(Rollout.id == uuid.UUID(rid))
            .values(window_end=utcnow() - timedelta(seconds=1))
        )  # fmt: skip
        await uow.commit()
    found = await act(client, operator, rid, "start", 409)
    assert (found["reason"], found["rollout_status"]) == ("window_ended", "draft")
    assert "window ended" in found["detail"]
    r = await client.get(f"{ROLLOUTS}/{rid}", headers=operator.headers)
    assert r.json()["status"] == "draft"


async def test_unsigned_firmware_where_signatures_are_required_updates_nobody(
    client, operator: Actor, admin: Actor, runtime: Runtime
) -> None:
    ws = operator.workspace_id
    artifact = await make_artifact(runtime, ws)  # no signature
    devices = await make_devices(runtime, ws, 3)
    devices += await make_devices(runtime, ws, 1, firmware_version="2.0.0")
    data = body(artifact, devices)
    r = await client.post(f"{ROLLOUTS}/dry-run", json=data, headers=operator.headers)
    assert (r.json()["included"], r.json()["excluded_by_reason"]) == (
        3, {"already_on_version": 1},
    )  # fmt: skip
    r = await client.put("/api/v1/firmware/policy", json={"require_signed": True},
                         headers=admin.headers)  # fmt: skip
    assert r.json()["require_signed"] is True
    r = await client.post(f"{ROLLOUTS}/dry-run", json=data, headers=operator.headers)
    dry = r.json()
    assert (dry["included"], dry["waves"]) == (0, [])
    assert dry["excluded_by_reason"] == {"already_on_version": 1, "unsigned": 3}
    unsigned = [d for d in dry["items"] if d["reason"] == "unsigned"]
    assert {d["device_id"] for d in unsigned} == {str(d) for d in devices[:3]}
    assert "requires signed firmware" in unsigned[0]["detail"]
    rid = (await create(client, operator, data))["id"]
    found = await act(client, operator, rid, "start", 409)
    assert found["reason"] == "unsigned"
    assert "not signed" in found["detail"]
    assert found["excluded_by_reason"] == {"already_on_version": 1, "unsigned": 3}
    r = await client.get(f"{ROLLOUTS}/{rid}", headers=operator.headers)
    assert r.json()["status"] == "draft"


async def test_lists_devices_and_another_workspace(
    client, operator: Actor, runtime: Runtime, factory: Factory
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 4)
    rid = (await create(client, operator, body(artifact, devices, canary=1)))["id"]
    await create(client, operator, body(artifact, devices, name="Second"))
    await act(client, operator, rid, "start")
    r = await client.get(f"{ROLLOUTS}?status=running", headers=operator.headers)
    assert [i["id"] for i in r.json()["items"]] == [rid] and r.json()["total"] == 1
    assert (await client.get(ROLLOUTS, headers=operator.headers)).json()["total"] == 2
    r = await client.get(f"{ROLLOUTS}/{rid}/devices?wave=2&state=unreleased",
                         headers=operator.headers)  # fmt: skip
    page = r.json()
    assert page["total"] == 3 and {i["state"] for i in page["items"]} == {"unreleased"}
    assert {i["wave"] for i in page["items"]} == {2}
    r = await client.get(f"{ROLLOUTS}/{rid}/devices?state=completed", headers=operator.headers)
    assert r.json()["total"] == 0
    waves = (await client.get(f"{ROLLOUTS}/{rid}/waves", headers=operator.headers)).json()
    assert [(w["size"], w["figures"]["pending"]) for w in waves["waves"]] == [(1, 1), (3, 3)]
    assert (waves["figures"]["targets"], waves["figures"]["pending"]) == (4, 4)
    stranger = await factory.user("admin", workspace="other")
    for path in ("", "/waves", "/devices", "/dry-run"):
        problem(await client.get(f"{ROLLOUTS}/{rid}{path}", headers=stranger.headers), 404)
    problem(await client.post(f"{ROLLOUTS}/{rid}/pause", headers=stranger.headers), 404)


async def test_every_status_change_is_an_event_after_commit(
    client, operator: Actor, runtime: Runtime
) -> None:
    seen = rollout_events(runtime)
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 2)
    rid = (await create(client, operator, body(artifact, devices)))["id"]
    await act(client, operator, rid, "start")
    await act(client, operator, rid, "pause")
    await act(client, operator, rid, "pause", 409)
    await act(client, operator, rid, "abort")
    assert [(e.payload["from_status"], e.payload["status"]) for e in seen] == [
        (None, "draft"), ("draft", "running"), ("running", "paused"), ("paused", "aborted"),
    ]  # fmt: skip
    assert {e.payload["rollout_id"] for e in seen} == {rid}
    assert {e.workspace_id for e in seen} == {operator.workspace_id}


async def dry_ids(client, actor: Actor, data: dict[str, Any]) -> set[str]:
    r = await client.post(f"{ROLLOUTS}/dry-run", json=data, headers=actor.headers)
    assert r.status_code == 200, r.text
    return {i["device_id"] for i in r.json()["items"] if i["wave"] is not None}


async def test_a_filter_or_a_group_as_the_target(
    client, operator: Actor, runtime: Runtime, factory: Factory
) -> None:
    ws = operator.workspace_id
    artifact = await make_artifact(runtime, ws)
    roof = await make_devices(runtime, ws, 3, tags=["roof", "north"])
    cellar = await make_devices(runtime, ws, 2, tags=["cellar"], location="Plant 2")
    await make_devices(runtime, await factory.workspace("other"), 2, tags=["roof"])
    by_filter = {**body(artifact, []), "target": {"filter": {"tags": ["roof"]}}}
    assert await dry_ids(client, operator, by_filter) == {str(d) for d in roof}
    by_filter["target"] = {"filter": {"location": "Plant 2", "status": "deployed"}}
    assert await dry_ids(client, operator, by_filter) == {str(d) for d in cellar}

    r = await client.post(
        "/api/v1/device-groups", headers=operator.headers,
        json={"name": "Pick", "kind": "static"},
    )  # fmt: skip
    static = r.json()["id"]
    r = await client.post(f"/api/v1/device-groups/{static}/members", headers=operator.headers,
                          json={"device_ids": [str(roof[0]), str(cellar[0])]})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    by_group = {**body(artifact, []), "target": {"group_id": static}}
    assert await dry_ids(client, operator, by_group) == {str(roof[0]), str(cellar[0])}

    r = await client.post(
        "/api/v1/device-groups", headers=operator.headers,
        json={"name": "North", "kind": "dynamic", "filter": {"tags": ["north"]}},
    )  # fmt: skip
    dynamic = r.json()["id"]
    rollout = await create(client, operator, {**body(artifact, []),
                                              "target": {"group_id": dynamic}})  # fmt: skip
    assert rollout["target"] == {"group_id": dynamic}
    started = await act(client, operator, rollout["id"], "start")
    assert started["figures"]["targets"] == 3
    # The start took a snapshot: a device that joins the group later is not in it.
    await make_devices(runtime, ws, 1, tags=["north"])
    again = await client.get(f"{ROLLOUTS}/{rollout['id']}", headers=operator.headers)
    assert again.json()["figures"]["targets"] == 3


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"filter": {"colour": "red"}}, "target.filter.colour"),
        ({"filter": {}}, "target.filter"),
        ({"filter": {"status": ["sideways"]}}, "target.filter.status"),
        ({"group_id": "not-a-uuid"}, "target.group_id"),
    ],
)
async def test_a_bad_filter_or_group_is_a_422(
    client, operator: Actor, runtime: Runtime, target: dict[str, Any], field: str
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    data = {**body(artifact, []), "target": target}
    found = problem(await client.post(ROLLOUTS, json=data, headers=operator.headers), 422)
    assert any(e["field"].startswith(field) for e in found["errors"]), found


async def test_an_unknown_or_anothers_group_is_a_422(
    client, operator: Actor, runtime: Runtime, factory: Factory
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    stranger = await factory.user("admin", workspace="other")
    r = await client.post("/api/v1/device-groups", headers=stranger.headers,
                          json={"name": "Theirs"})  # fmt: skip
    for group in (str(uuid.uuid4()), r.json()["id"]):
        data = {**body(artifact, []), "target": {"group_id": group}}
        for path in (ROLLOUTS, f"{ROLLOUTS}/dry-run"):
            found = problem(await client.post(path, json=data, headers=operator.headers), 422)
            assert found["errors"][0]["field"] == "target.group_id"


async def test_an_artifact_an_unfinished_rollout_uses_is_not_deleted(
    client, operator: Actor, runtime: Runtime
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 2)
    rid = (await create(client, operator, body(artifact, devices)))["id"]
    for action in (None, "start", "pause"):
        if action is not None:
            await act(client, operator, rid, action)
        r = await client.delete(f"/api/v1/firmware/artifacts/{artifact}", headers=operator.headers)
        problem(r, 409)
    r = await client.get(f"/api/v1/firmware/artifacts/{artifact}", headers=operator.headers)
    assert r.status_code == 200
