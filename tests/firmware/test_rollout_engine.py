"""The rollout engine with real per-device updates: waves, soak, automatic stops, the
rate cap, the window, restarts. The engine is run by the test (``engine.run()``) on a
clock the test moves; devices report through the update service, or as real WebSocket
devices of a served app."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import socketio
from sqlalchemy import update

from conftest import Actor, Factory, Served
from fieldwatch.core.events import Event
from fieldwatch.devices.models import Device
from fieldwatch.firmware.rollouts.engine import jitter_offset, paced_budget
from fieldwatch.runtime import Runtime, build_runtime
from firmware_helpers import report, update_frame
from rollout_helpers import (
    ROLLOUTS,
    Clock,
    act,
    body,
    device_reports,
    device_runs,
    launch,
    make_artifact,
    make_devices,
    open_update,
    read,
    rollout_events,
    running,
    targets_of,
    updates_of,
)
from ws_helpers import connected, make_device, nothing_more, recv


def engine_clock(runtime: Runtime) -> Clock:
    runtime.rollouts.clock = clock = Clock()
    return clock


async def waves(client, actor: Actor, rollout_id: str) -> list[tuple[int, str, int]]:
    r = await client.get(f"{ROLLOUTS}/{rollout_id}/waves", headers=actor.headers)
    return [(w["number"], w["status"], w["figures"]["pending"]) for w in r.json()["waves"]]


async def test_the_canary_completes_soaks_then_the_next_wave_goes(
    client, operator: Actor, runtime: Runtime
) -> None:
    seen = rollout_events(runtime)
    clock, devices, rid = await running(client, runtime, operator, 5, canary=1, soak_s=60)
    await runtime.rollouts.run()
    [canary] = await updates_of(runtime, rid)
    assert (canary.wave, canary.state, canary.target_version) == (1, "pending", "2.0.0")
    await runtime.rollouts.run()  # nothing more while the canary is on its way
    assert len(await updates_of(runtime, rid)) == 1
    await device_reports(runtime, canary.device_id, canary.command_id, "installing")
    await device_runs(runtime, canary.device_id, "2.0.0")
    await runtime.rollouts.run()
    assert await waves(client, operator, rid) == [(1, "soaking", 0), (2, "pending", 4)]
    clock.advance(59)
    await runtime.rollouts.run()
    assert len(await updates_of(runtime, rid)) == 1  # still soaking
    clock.advance(2)
    await runtime.rollouts.run()
    assert await waves(client, operator, rid) == [(1, "completed", 0), (2, "running", 0)]
    rest = (await updates_of(runtime, rid))[1:]
    assert {u.wave for u in rest} == {2} and len(rest) == 4
    assert {u.device_id for u in rest} | {canary.device_id} == set(devices)
    for u in rest:
        await device_runs(runtime, u.device_id, "2.0.0")
    await runtime.rollouts.run()
    done = await read(client, operator, rid)
    assert (done["status"], done["current_wave"], done["finished_at"] is not None) == (
        "completed", None, True,
    )  # fmt: skip
    assert (done["figures"]["targets"], done["figures"]["completed"]) == (5, 5)
    assert done["status_reason"] == "5 of 5 devices updated"
    changes = [(e.payload["status"], e.payload["wave"], e.payload["wave_status"]) for e in seen]
    assert changes == [
        ("draft", None, None), ("running", None, None), ("running", 1, "soaking"),
        ("running", 1, "completed"), ("running", 2, "running"), ("running", 2, "completed"),
        ("completed", None, None),
    ]  # fmt: skip


async def test_failures_above_the_threshold_pause_and_the_next_wave_gets_nothing(
    client, operator: Actor, runtime: Runtime
) -> None:
    clock, _, rid = await running(
        client, runtime, operator, 10, canary=4, failure_threshold=0.25, min_finished=2
    )
    await runtime.rollouts.run()
    first = await updates_of(runtime, rid)
    assert len(first) == 4 and {u.wave for u in first} == {1}
    await device_reports(runtime, first[0].device_id, first[0].command_id, "failed",
                         reason="install_failed")  # fmt: skip
    await runtime.rollouts.run()  # 1 finished: below min_finished, no verdict yet
    assert (await read(client, operator, rid))["status"] == "running"
    await device_runs(runtime, first[1].device_id, "2.0.0")
    await runtime.rollouts.run()
    paused = await read(client, operator, rid)
    assert paused["status"] == "paused"
    assert paused["status_reason"] == (
        "wave 1: 1 of 2 finished updates failed (50%), above the 25% threshold (install_failed: 1)"
    )
    assert paused["waves"][0]["figures"]["failed_by_reason"] == {"install_failed": 1}
    for u in first[2:]:
        await device_runs(runtime, u.device_id, "2.0.0")
    for _ in range(3):
        clock.advance(120)
        await runtime.rollouts.run()
    found = await updates_of(runtime, rid)
    assert [u.wave for u in found] == [1, 1, 1, 1]  # no update for any device of wave 2
    wave_2 = [t for t in await targets_of(runtime, rid) if t.wave == 2]
    assert len(wave_2) == 6 and all(t.released_at is None for t in wave_2)
    assert (await read(client, operator, rid))["status"] == "paused"
    # Resuming accepts the failures so far: wave 1 is over, wave 2 goes.
    await act(client, operator, rid, "resume")
    await runtime.rollouts.run()  # wave 1 ends (soaks 0 s)
    await runtime.rollouts.run()  # wave 2 starts: a first burst of 5 (paced, 60 a minute)
    assert [u.wave for u in await updates_of(runtime, rid)] == [1] * 4 + [2] * 5
    clock.advance(1)
    await runtime.rollouts.run()
    assert [u.wave for u in await updates_of(runtime, rid)] == [1] * 4 + [2] * 6


async def test_on_failure_abort_cancels_what_has_not_started(
    client, operator: Actor, runtime: Runtime
) -> None:
    _, _, rid = await running(
        client, runtime, operator, 6, canary=3, failure_threshold=0, on_failure="abort"
    )
    await runtime.rollouts.run()
    failing, busy, waiting = await updates_of(runtime, rid)
    await device_reports(runtime, busy.device_id, busy.command_id, "downloading", bytes=10)
    await device_reports(runtime, failing.device_id, failing.command_id, "failed",
                         reason="signature_invalid")  # fmt: skip
    await runtime.rollouts.run()
    aborted = await read(client, operator, rid)
    assert aborted["status"] == "aborted" and aborted["finished_at"]
    assert aborted["status_reason"].startswith("wave 1: 1 of 1 finished updates failed (100%)")
    assert [w["status"] for w in aborted["waves"]] == ["halted", "halted"]
    states = {u.command_id: u.state for u in await updates_of(runtime, rid)}
    assert states == {
        failing.command_id: "failed", busy.command_id: "downloading",
        waiting.command_id: "cancelled",
    }  # fmt: skip
    r = await client.get(f"/api/v1/commands/{waiting.command_id}", headers=operator.headers)
    assert r.json()["status"] == "cancelled"
    # Cancelled the way an operator's cancel is: the update's own detail and its
    # "cancelled" transition name the rollout.
    r = await client.get(f"/api/v1/firmware/updates/{waiting.command_id}",
                         headers=operator.headers)  # fmt: skip
    cancelled = r.json()
    assert (cancelled["state"], cancelled["detail"]) == ("cancelled", f"cancelled by rollout:{rid}")
    last = cancelled["transitions"][-1]
    assert (last["to_status"], last["detail"]) == ("cancelled", f"cancelled by rollout:{rid}")
    await runtime.rollouts.run()
    assert len(await updates_of(runtime, rid)) == 3
    figures = (await read(client, operator, rid))["figures"]
    assert (figures["failed"], figures["cancelled"], figures["pending"]) == (1, 1, 3)
    assert figures["in_progress"] == {"downloading": 1}


async def test_manual_pause_resume_and_abort(client, operator: Actor, runtime: Runtime) -> None:
    _, _, rid = await running(client, runtime, operator, 3, canary=0)
    await act(client, operator, rid, "pause")
    await runtime.rollouts.run()
    assert await updates_of(runtime, rid) == []
    await act(client, operator, rid, "resume")
    await runtime.rollouts.run()
    released = await updates_of(runtime, rid)
    assert len(released) == 3
    await device_reports(runtime, released[0].device_id, released[0].command_id, "installing")
    await act(client, operator, rid, "abort")
    states = sorted(u.state for u in await updates_of(runtime, rid))
    assert states == ["cancelled", "cancelled", "installing"]  # mid-update: it finishes
    for withdrawn in released[1:]:
        r = await client.get(f"/api/v1/firmware/updates/{withdrawn.command_id}",
                             headers=operator.headers)  # fmt: skip
        detail = f"cancelled by rollout:{rid}, aborted by user:{operator.email}"
        assert r.json()["detail"] == detail
        assert [(t["to_status"], t["detail"]) for t in r.json()["transitions"][-1:]] == [
            ("cancelled", detail)
        ]
    await device_runs(runtime, released[0].device_id, "2.0.0")
    figures = (await read(client, operator, rid))["figures"]
    assert (figures["completed"], figures["cancelled"]) == (1, 2)


async def test_the_rate_cap_holds_per_minute(client, operator: Actor, runtime: Runtime) -> None:
    clock, _, rid = await running(client, runtime, operator, 8, canary=0, rate_per_minute=3)
    counts = []
    for step in (0, 30, 29, 2, 30, 31, 60):
        clock.advance(step)
        await runtime.rollouts.run()
        counts.append(len(await updates_of(runtime, rid)))
    assert counts == [3, 3, 3, 6, 6, 8, 8]
    times = sorted(t.released_at for t in await targets_of(runtime, rid) if t.released_at)
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if (t - start).total_seconds() < 60) <= 3


def test_the_pace_spreads_the_cap_over_the_minute() -> None:
    # 200 a minute: a burst of 5, then 10 every 3 s; never more than 5 at one advance.
    assert paced_budget(200, 0, 0) == 5
    assert paced_budget(200, 0, 5) == 0
    assert paced_budget(200, 3, 5) == 5  # 10 due by 3 s (+5 burst), 5 at most at once
    assert paced_budget(200, 3, 10) == 5
    assert paced_budget(200, 3, 15) == 0
    assert paced_budget(200, 30, 105) == 0 and paced_budget(200, 30, 100) == 5
    # A slow cap releases its minute at once, as before.
    assert paced_budget(3, 0, 0) == 5
    # 6,000 a minute: 100 a second is the burst.
    assert paced_budget(6000, 0, 0) == 100 and paced_budget(6000, 0.5, 100) == 50
    assert paced_budget(200, -1, 0) == 5  # a clock step back never releases more


async def test_a_fast_cap_releases_evenly_over_the_minute(
    client, operator: Actor, runtime: Runtime
) -> None:
    clock, _, rid = await running(client, runtime, operator, 150, canary=0, rate_per_minute=120)
    counts = []
    for _ in range(61):
        await runtime.rollouts.run()
        counts.append(len(await updates_of(runtime, rid)))
        clock.advance(1)
    steps = [b - a for a, b in zip([0, *counts], counts, strict=False)]
    assert max(steps) == 5 and steps[0] == 5  # never a minute's 120 at once
    assert counts[29] == 5 + 2 * 29  # 2 a second after the first burst
    assert counts[59] == 120 and counts[60] == 120  # the minute's cap: the 121st waits
    assert all(step <= 5 for step in steps)


async def test_jitter_spreads_a_wave_over_its_seconds(
    client, operator: Actor, runtime: Runtime
) -> None:
    clock, devices, rid = await running(client, runtime, operator, 12, canary=0, jitter_s=100)
    rollout_id = uuid.UUID(rid)
    offsets = {d: jitter_offset(rollout_id, d, 100).total_seconds() for d in devices}
    assert len(set(offsets.values())) > 1
    started = clock.now
    for at in (0, 30, 70, 101):
        clock.now = started
        clock.advance(at)
        for _ in range(3):  # one advance releases at most 5 (the pace's burst)
            await runtime.rollouts.run()
        released = {u.device_id for u in await updates_of(runtime, rid)}
        assert released == {d for d, s in offsets.items() if s <= at}


async def test_devices_no_longer_eligible_at_release_are_skipped_with_their_reason(
    client, operator: Actor, runtime: Runtime
) -> None:
    _, ids, rid = await running(client, runtime, operator, 4, canary=0)
    in_repair, busy, current, fine = ids
    async with runtime.uow() as uow:  # what changed between the start and the release
        await uow.session.execute(
            update(Device).where(Device.id == in_repair).values(status="maintenance")
        )
        await uow.session.execute(
            update(Device).where(Device.id == current).values(firmware_version="2.0.0")
        )
        await uow.commit()
    rollout = await read(client, operator, rid)
    await open_update(runtime, operator.workspace_id, busy, uuid.UUID(rollout["artifact_id"]))
    await runtime.rollouts.run()
    r = await client.get(f"{ROLLOUTS}/{rid}/devices", params={"state": "skipped"},
                         headers=operator.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    skipped = {
        uuid.UUID(d["device_id"]): (d["state"], d["reason"], d["detail"], d["update_id"])
        for d in r.json()["items"]
    }
    assert skipped == {
        in_repair: ("skipped", "not_deployed", "the device is maintenance", None),
        busy: ("skipped", "open_update", skipped[busy][2], None),
        current: ("skipped", "already_on_version", "the device already runs 2.0.0", None),
    }
    assert "still downloading on this device" in skipped[busy][2]
    r = await client.get(f"{ROLLOUTS}/{rid}/devices", headers=operator.headers)
    [released] = [d for d in r.json()["items"] if d["state"] != "skipped"]
    assert (released["device_id"], released["state"], released["reason"]) == (
        str(fine), "pending", None,
    )  # fmt: skip
    assert (await read(client, operator, rid))["figures"]["skipped"] == 3


async def test_a_window_bounds_releases_and_updates(
    client, operator: Actor, runtime: Runtime
) -> None:
    clock = engine_clock(runtime)
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 4)
    start = clock.now.replace(microsecond=0)
    window = {"window_start": (start + timedelta(seconds=600)).isoformat(),
              "window_end": (start + timedelta(seconds=700)).isoformat()}  # fmt: skip
    data = body(artifact, devices, canary=2, rate_per_minute=1, **window)
    rid = await launch(client, operator, data)
    await runtime.rollouts.run()
    assert await updates_of(runtime, rid) == []  # before the window
    clock.advance(600)
    await runtime.rollouts.run()
    [first] = await updates_of(runtime, rid)
    command = (await client.get(f"/api/v1/commands/{first.command_id}",
                                headers=operator.headers)).json()  # fmt: skip
    assert command["expires_at"].startswith(window["window_end"][:16])
    clock.advance(100)  # the window ends with devices not released
    await runtime.rollouts.run()
    ended = await read(client, operator, rid)
    assert ended["status"] == "aborted"
    assert "with 3 devices not released" in ended["status_reason"]
    [expired] = await updates_of(runtime, rid)
    assert (expired.command_id, expired.state) == (first.command_id, "expired")
    r = await client.get(f"/api/v1/firmware/updates/{first.command_id}", headers=operator.headers)
    ends = f"expired: the rollout's window ended at {window['window_end'][:19]}"
    assert r.json()["state"] == "expired" and r.json()["detail"].startswith(ends)
    last = r.json()["transitions"][-1]
    assert last["to_status"] == "expired" and last["detail"].startswith(ends)
    r = await client.get(f"/api/v1/commands/{first.command_id}", headers=operator.headers)
    assert r.json()["status"] == "expired"
    figures = (await read(client, operator, rid))["figures"]
    assert (figures["expired"], figures["cancelled"], figures["pending"]) == (1, 0, 3)


async def test_a_window_that_ends_before_released_updates_started_aborts(
    client, operator: Actor, runtime: Runtime
) -> None:
    clock = engine_clock(runtime)
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 3)
    end = clock.now.replace(microsecond=0) + timedelta(seconds=100)
    data = body(artifact, devices, canary=3, rate_per_minute=60, window_end=end.isoformat())
    rid = await launch(client, operator, data)
    await runtime.rollouts.run()
    released = await updates_of(runtime, rid)
    assert [u.state for u in released] == ["pending"] * 3  # the devices are offline
    clock.advance(101)
    await runtime.rollouts.run()
    ended = await read(client, operator, rid)
    assert ended["status"] == "aborted"
    assert ended["status_reason"] == (
        f"the window ended at {end.isoformat()} with 3 updates not started"
    )
    assert {u.state for u in await updates_of(runtime, rid)} == {"expired"}
    r = await client.get(f"/api/v1/firmware/updates/{released[0].command_id}",
                         headers=operator.headers)  # fmt: skip
    window = f"expired: the rollout's window ended at {end.isoformat()}"
    assert r.json()["detail"].startswith(window)


async def test_a_restart_loses_nothing_and_releases_nothing_twice(
    client, operator: Actor, runtime: Runtime
) -> None:
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 7)
    rid = await launch(client, operator, body(artifact, devices, canary=0, rate_per_minute=3))
    clock = Clock()
    first = build_runtime(runtime.settings)
    first.rollouts.clock = clock
    try:
        await first.rollouts.run()
    finally:
        await first.close()
    assert len(await updates_of(runtime, rid)) == 3
    again, other = build_runtime(runtime.settings), build_runtime(runtime.settings)
    again.rollouts.clock = other.rollouts.clock = clock
    try:
        await asyncio.gather(again.rollouts.run(), other.rollouts.run())
        assert len(await updates_of(runtime, rid)) == 3  # the cap survives the restart
        clock.advance(61)
        await asyncio.gather(again.rollouts.run(), other.rollouts.run())
        clock.advance(61)
        await asyncio.gather(again.rollouts.run(), other.rollouts.run(), again.rollouts.run())
    finally:
        await again.close()
        await other.close()
    found = await updates_of(runtime, rid)
    assert len(found) == 7 and {u.device_id for u in found} == set(devices)
    targets = await targets_of(runtime, rid)
    assert {t.command_id for t in targets} == {u.command_id for u in found}


async def test_real_devices_offline_ones_when_they_connect_and_a_failing_canary_stops_it(
    served: Served, runtime: Runtime, factory: Factory
) -> None:
    engine_clock(runtime)
    op = await factory.user("operator")
    artifact = await make_artifact(runtime, op.workspace_id)
    devices = [await make_device(served, op) for _ in range(5)]
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(Device)
            .where(Device.id.in_([uuid.UUID(d.id) for d in devices]))
            .values(status="deployed", firmware_version="1.0.0")
        )
        await uow.commit()
    data = body(artifact, [uuid.UUID(d.id) for d in devices], canary=2, failure_threshold=0)
    rid = await launch(served.http, op, data)
    r = await served.http.get(f"{ROLLOUTS}/{rid}/devices?wave=1", headers=op.headers)
    canary = {i["device_id"] for i in r.json()["items"]}
    online, offline = [d for d in devices if d.id in canary]
    later = [d for d in devices if d.id not in canary]
    sockets = {d.id: await connected(served, d) for d in [online, *later]}
    await runtime.rollouts.run()
    frame = await update_frame(sockets[online.id])
    assert frame["version"] == "2.0.0"
    # The offline canary gets its update when it connects.
    sockets[offline.id] = await connected(served, offline)
    late = await update_frame(sockets[offline.id])
    assert late["version"] == "2.0.0" and late["update_id"] != frame["update_id"]
    answer = await report(sockets[online.id], frame["update_id"], "installing")
    assert answer["state"] == "installing"
    hb = {"type": "heartbeat", "id": "hb", "firmware_version": "2.0.0"}
    await sockets[online.id].send(json.dumps(hb))
    assert (await recv(sockets[online.id]))["type"] == "ack"
    failed = await report(sockets[offline.id], late["update_id"], "failed", reason="install_failed")
    assert failed["state"] == "failed"
    await runtime.rollouts.run()
    stopped = await read(served.http, op, rid)
    assert stopped["status"] == "paused"
    assert (stopped["figures"]["completed"], stopped["figures"]["failed"]) == (1, 1)
    await runtime.rollouts.run()
    for d in later:  # wave 2: nothing was sent
        await nothing_more(sockets[d.id])
    assert {u.wave for u in await updates_of(runtime, rid)} == {1}
    for ws in sockets.values():
        await ws.close()


async def test_dashboards_see_rollout_changes_over_socketio(
    served: Served, runtime: Runtime, factory: Factory
) -> None:
    op = await factory.user("operator")
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()
    dashboard = socketio.AsyncClient(reconnection=False)

    async def on_firmware(message: dict[str, Any]) -> None:
        received.append(message)
        arrived.set()

    dashboard.on("firmware", on_firmware)
    await dashboard.connect(served.base_url, auth={"token": op.token},
                            socketio_path="ws/monitoring", transports=["websocket"],
                            wait_timeout=10)  # fmt: skip
    try:
        artifact = await make_artifact(runtime, op.workspace_id)
        devices = await make_devices(runtime, op.workspace_id, 2)
        rid = await launch(served.http, op, body(artifact, devices))
        async with asyncio.timeout(10):
            while not any(m.get("status") == "running" for m in received):
                arrived.clear()
                await arrived.wait()
    finally:
        await dashboard.disconnect()
    mine = [m for m in received if m["type"] == "firmware.rollout_changed"]
    assert [(m["rollout_id"], m["from_status"], m["status"]) for m in mine] == [
        (rid, None, "draft"), (rid, "draft", "running"),
    ]  # fmt: skip
    assert mine[0]["workspace_id"] == str(op.workspace_id) and mine[0]["device_id"] is None


async def test_the_engine_runs_with_the_runtime(client, operator: Actor, runtime: Runtime) -> None:
    _, devices, rid = await running(client, runtime, operator, 3, canary=0)
    created: set[str] = set()
    all_there = asyncio.Event()

    async def on_update(event: Event) -> None:
        created.add(event.payload["device_id"])
        if len(created) == len(devices):
            all_there.set()

    runtime.bus.subscribe("firmware.update_changed", on_update)
    runtime.rollouts.interval_s = 0.05
    await runtime.start()  # the fixture closes it
    async with asyncio.timeout(10):
        await all_there.wait()
    assert created == {str(d) for d in devices}
    assert (await read(client, operator, rid))["figures"]["pending"] == 0


async def test_a_wave_that_ends_above_the_threshold_stops_and_a_resume_accepts_it(
    client, operator: Actor, runtime: Runtime
) -> None:
    clock, _, rid = await running(
        client, runtime, operator, 4, canary=2, min_finished=5, failure_threshold=0.4
    )
    await runtime.rollouts.run()
    failing, fine = await updates_of(runtime, rid)
    await device_reports(runtime, failing.device_id, failing.command_id, "failed",
                         reason="install_failed")  # fmt: skip
    await runtime.rollouts.run()  # fewer than min_finished, and the wave goes on
    assert (await read(client, operator, rid))["status"] == "running"
    await device_runs(runtime, fine.device_id, "2.0.0")
    await runtime.rollouts.run()  # the wave ended: judged however few it had
    paused = await read(client, operator, rid)
    assert (paused["status"], paused["status_reason"]) == (
        "paused",
        "wave 1 ended with 1 of 2 updates not completed (1 failed, 0 expired; 50%), above "
        "the 40% threshold (install_failed: 1)",
    )
    await runtime.rollouts.run()
    assert len(await updates_of(runtime, rid)) == 2
    clock.advance(5)
    await act(client, operator, rid, "resume")
    # The wave keeps when it started; its failures count from the resume.
    resumed = (await read(client, operator, rid))["waves"][0]
    assert resumed["started_at"] == paused["waves"][0]["started_at"]
    assert resumed["judged_from"] not in (None, resumed["started_at"])
    await runtime.rollouts.run()
    await runtime.rollouts.run()
    assert [u.wave for u in await updates_of(runtime, rid)] == [1, 1, 2, 2]
    assert (await read(client, operator, rid))["status"] == "running"
