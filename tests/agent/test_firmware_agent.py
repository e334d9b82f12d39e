"""The device SDK's firmware updater against a real HTTP server: download with resume,
checksum and signature checks, the reports it sends, idempotence."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from base64 import b64encode
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agent_firmware_helpers import (
    CuttingProxy,
    FakeFieldwatch,
    ImageServer,
    signing_key,
    update_message,
)

from artifact_helpers import uploaded
from conftest import Actor, Served
from fieldwatch.agent.fetch import partial_path
from fieldwatch.agent.firmware import (
    PENDING,
    FirmwareHooks,
    FirmwareUpdater,
    canonical_manifest,
    fingerprint,
    load_public_key,
)
from telemetry_helpers import device_with_token

IMAGE = os.urandom(300_000)
SHA = hashlib.sha256(IMAGE).hexdigest()


class Device:
    """What an updater's hooks did: the reports, installs and reboots."""

    def __init__(self, version: str = "1.4.0", install_error: Exception | None = None) -> None:
        self.running = version
        self.reports: list[tuple[str, str, dict[str, Any]]] = []
        self.installed: list[bytes] = []
        self.reboots: list[str] = []
        self.announced = 0
        self.install_error = install_error
        self.gate: asyncio.Event | None = None  # holds the first report until set

    async def report(self, update_id: str, state: str, fields: dict[str, Any]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.reports.append((update_id, state, fields))

    async def announce(self) -> None:
        self.announced += 1

    def install(self, path: Path, message: dict[str, Any]) -> None:
        if self.install_error is not None:
            raise self.install_error
        self.installed.append(path.read_bytes())

    def reboot(self, message: dict[str, Any]) -> None:
        self.reboots.append(message["version"])
        self.running = message["version"]

    def hooks(self) -> FirmwareHooks:
        return FirmwareHooks(self.report, lambda: self.running, self.announce, self.reboot,
                             self.install)  # fmt: skip

    def states(self) -> list[str]:
        return [state for _, state, _ in self.reports]


@pytest.fixture
async def server() -> AsyncIterator[ImageServer]:
    image_server = await ImageServer(IMAGE).start()
    yield image_server
    await image_server.stop()


def updater(tmp_path: Path, device: Device, server: ImageServer, **options: Any) -> FirmwareUpdater:
    return FirmwareUpdater(tmp_path / "fw", device.hooks(), server=server.base_url,
                           token="fwd_test", **options)  # fmt: skip


def message(server: ImageServer, **options: Any) -> dict[str, Any]:
    return update_message(IMAGE, f"{server.base_url}/image?sig=abc", **options)


async def test_a_full_update_downloads_verifies_installs_and_reboots(
    tmp_path: Path, server: ImageServer
) -> None:
    device = Device()
    update = message(server)
    await updater(tmp_path, device, server).handle(update)
    states = device.states()
    assert states[0] == "acknowledged"
    assert [s for s in states if s != "downloading"] == [
        "acknowledged", "downloaded", "verified", "installing", "rebooting"
    ]  # fmt: skip
    assert all(uid == update["update_id"] for uid, _, _ in device.reports)
    progress = [f["bytes"] for _, s, f in device.reports if s == "downloading"]
    assert 1 <= len(progress) <= 11  # every tenth at most, not one per 64 KiB chunk
    assert progress == sorted(progress) and progress[-1] <= len(IMAGE)
    assert device.reports[states.index("downloaded")][2] == {"bytes": len(IMAGE)}
    assert device.installed == [IMAGE] and device.reboots == ["1.5.0"]
    # The token goes to download_path; the signed URL is not used.
    assert server.requests[0]["Authorization"] == "Bearer fwd_test"
    assert not list((tmp_path / "fw").iterdir())  # image, partial file, saved message: gone


async def test_without_a_token_the_signed_url_is_used(tmp_path: Path, server: ImageServer):
    device = Device()
    plain = FirmwareUpdater(tmp_path, device.hooks())  # no server, no token
    await plain.handle(message(server))
    assert device.installed == [IMAGE]
    assert "Authorization" not in server.requests[0]
    assert len(server.requests) == 1


async def test_a_dropped_connection_resumes_from_the_partial_file(
    tmp_path: Path, server: ImageServer
) -> None:
    server.drops = [100_000]
    device = Device()
    await updater(tmp_path, device, server).handle(message(server))
    assert len(server.requests) == 2
    first, second = server.requests
    assert "Range" not in first
    assert server.range_starts() == [None, 100_000]  # what was already on disk
    assert second["If-Range"] == f'"{SHA}"'
    assert device.installed == [IMAGE]
    assert "failed" not in device.states()


async def test_an_interrupted_update_resumes_on_the_next_attempt(
    tmp_path: Path, server: ImageServer
) -> None:
    """The download fails this attempt (the connection drops, no tries left); the
    partial file stays, and the server's resend continues from it."""
    server.drops = [120_000]
    device = Device()
    update = message(server)
    one = updater(tmp_path, device, server, download_tries=1)
    await one.handle(update)
    assert device.states()[-1] == "failed"
    assert device.reports[-1][2]["reason"] == "download_failed"
    part = partial_path(one.target(update))
    on_disk = part.stat().st_size
    assert 0 < on_disk <= 120_000
    resent = {**update, "attempt": 2}
    await updater(tmp_path, device, server, download_tries=1).handle(resent)
    assert server.range_starts()[-1] == on_disk
    assert device.installed == [IMAGE]
    assert device.states()[-1] == "rebooting"


async def test_a_restart_mid_download_continues_the_saved_update(
    tmp_path: Path, server: ImageServer
) -> None:
    device = Device()
    update = message(server)
    first = updater(tmp_path, device, server)
    task = asyncio.create_task(first.handle(update))

    async def power_cut(update_id: str, state: str, fields: dict[str, Any]) -> None:
        device.reports.append((update_id, state, fields))
        if state == "downloading":
            task.cancel()  # the process dies with part of the image on disk

    first.hooks.report = power_cut
    with pytest.raises(asyncio.CancelledError):
        await task
    on_disk = partial_path(first.target(update)).stat().st_size
    assert 0 < on_disk < len(IMAGE)
    assert (tmp_path / "fw" / PENDING).exists()
    device.reports.clear()
    await updater(tmp_path, device, server).resume()  # the next start
    assert server.range_starts() == [None, on_disk]
    assert device.installed == [IMAGE]
    assert device.states()[-1] == "rebooting"


async def test_a_busy_server_is_tried_again_after_retry_after(tmp_path: Path, server: ImageServer):
    server.busy = 1
    device = Device()
    await updater(tmp_path, device, server).handle(message(server))
    assert len(server.requests) == 2 and device.installed == [IMAGE]


async def test_a_checksum_mismatch_fails_and_deletes_the_download(
    tmp_path: Path, server: ImageServer
) -> None:
    device = Device()
    update = message(server)
    update["sha256"] = update["checksum"] = hashlib.sha256(b"another image").hexdigest()
    one = updater(tmp_path, device, server)
    await one.handle(update)
    assert device.states()[-1] == "failed"
    assert device.reports[-1][2]["reason"] == "checksum_mismatch"
    assert "verified" not in device.states() and device.installed == []
    target = one.target(update)
    assert not target.exists() and not partial_path(target).exists()


async def test_a_good_signature_is_accepted(tmp_path: Path, server: ImageServer):
    private, raw, _ = signing_key()
    device = Device()
    await updater(tmp_path, device, server, public_keys=[raw], require_signature=True).handle(
        message(server, key=private)
    )
    assert device.installed == [IMAGE] and device.states()[-1] == "rebooting"


@pytest.mark.parametrize("tamper", ["signature", "unknown_key", "manifest", "unsigned"])
async def test_a_bad_signature_fails_before_downloading(
    tmp_path: Path, server: ImageServer, tamper: str
) -> None:
    private, raw, _ = signing_key()
    other, _, _ = signing_key()
    update = message(server, key=other if tamper == "unknown_key" else private)
    if tamper == "signature":
        update["signature"] = message(server, version="9.9.9", key=private)["signature"]
    elif tamper == "manifest":  # a valid signature over another image's manifest
        update["manifest"] = {**update["manifest"], "sha256": "0" * 64}
        update["signature"] = b64encode(
            private.sign(canonical_manifest(update["manifest"]))
        ).decode()
    elif tamper == "unsigned":
        update["signature"] = update["signing_key"] = None
    device = Device()
    await updater(tmp_path, device, server, public_keys=[raw], require_signature=True).handle(
        update
    )
    assert device.states() == ["acknowledged", "failed"]
    assert device.reports[-1][2]["reason"] == "signature_invalid"
    assert server.requests == [] and device.installed == []


async def test_an_install_failure_is_reported(tmp_path: Path, server: ImageServer):
    device = Device(install_error=RuntimeError("flash write failed"))
    await updater(tmp_path, device, server).handle(message(server))
    assert device.states()[-2:] == ["installing", "failed"]
    assert device.reports[-1][2] == {"reason": "install_failed", "detail": "flash write failed"}
    assert device.reboots == [] and device.running == "1.4.0"


async def test_the_same_message_twice_downloads_once(tmp_path: Path, server: ImageServer):
    device = Device()
    device.gate = asyncio.Event()  # the first report waits: the update is being worked on
    one = updater(tmp_path, device, server)
    update = message(server)
    first = asyncio.create_task(one.handle(update))
    await asyncio.sleep(0)
    await one.handle(dict(update))  # the resend returns at once
    assert device.reports == []
    device.gate.set()
    await first
    assert len(server.requests) == 1 and device.reboots == ["1.5.0"]
    assert device.states().count("acknowledged") == 1


async def test_an_update_to_the_running_version_reports_the_version(
    tmp_path: Path, server: ImageServer
) -> None:
    device = Device(version="1.5.0")
    await updater(tmp_path, device, server).handle(message(server))
    assert device.announced == 1 and device.reports == [] and server.requests == []


def test_canonical_manifest_and_keys_follow_the_contract() -> None:
    manifest = {"version": "1.5.0-é", "sha256": SHA, "size": 3, "device_types": ["esp32"],
                "hardware_versions": [], "security_version": 2}  # fmt: skip
    expected = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_manifest(manifest) == expected.encode("utf-8")
    _, raw, print_ = signing_key()
    for form in (raw, b64encode(raw).decode()):
        assert fingerprint(load_public_key(form)) == print_ == hashlib.sha256(raw).hexdigest()


# --- the SDK's WebSocket client, against a small server speaking the device protocol ----


async def test_the_websocket_client_takes_an_update_and_comes_back_on_the_new_version(
    tmp_path: Path, server: ImageServer
) -> None:
    from fieldwatch.agent import DeviceAgent

    update = message(server)
    fake = FakeFieldwatch(update)
    base = await fake.start()
    agent = DeviceAgent(base, "fwd_x", firmware_version="1.4.0", heartbeat=False)
    agent.enable_firmware_updates(tmp_path, use_token=False)  # the signed URL, then
    try:
        async with agent:
            async with asyncio.timeout(20):
                await fake.back.wait()
    finally:
        fake.server.close()
    first, second = fake.frames[0], fake.frames[1]
    assert first[0] == {"type": "status", "firmware_version": "1.4.0",
                        "id": first[0]["id"]}  # fmt: skip
    states = [f["state"] for f in first if f["type"] == "firmware_state"]
    assert [s for s in states if s != "downloading"] == [
        "acknowledged", "downloaded", "verified", "installing", "rebooting"
    ]  # fmt: skip
    assert all(f["update_id"] == update["update_id"] for f in first[1:])
    assert second[0]["type"] == "status" and second[0]["firmware_version"] == "1.5.0"
    assert agent.firmware_version == "1.5.0"
    assert len(server.requests) == 1  # one download for the message sent twice


# --- the simulator's devices ------------------------------------------------------------


async def _simulate_until(fake: FakeFieldwatch, base: str, sim: Any, want: Any) -> None:
    """Run one simulated device until ``want(fake)`` holds."""
    from fieldwatch.agent.simulator import simulate

    stop = asyncio.Event()

    async def watch() -> None:
        while not want(fake):
            fake.heard.clear()
            await fake.heard.wait()
        stop.set()

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(30):
            await simulate(base, ["fwd_x"], interval=0.1, report_every=0.2, stop=stop,
                           firmware=sim, versions=["1.4.0"])  # fmt: skip
    finally:
        watcher.cancel()
        fake.server.close()


async def test_a_simulated_power_cut_resumes_the_download_by_range(
    tmp_path: Path, server: ImageServer
) -> None:
    from fieldwatch.agent.sim_firmware import FirmwareSim

    server.image = IMAGE * 4  # long enough to be cut
    update = update_message(server.image, f"{server.base_url}/image")
    update["download_path"] = None  # (this endpoint serves no downloads): the URL, then
    fake = FakeFieldwatch(update)
    base = await fake.start()
    sim = FirmwareSim(power_loss_rate=1.0, power_loss_s=0.1, install_s=0.1, directory=tmp_path)
    await _simulate_until(fake, base, sim, lambda f: "1.5.0" in f.versions)
    starts = server.range_starts()
    assert len(starts) == 2 and starts[0] is None
    assert 0 < (starts[1] or 0) < len(server.image)  # resumed where the power cut left it
    assert fake.versions[:2] == ["1.4.0", "1.4.0"]  # before, and back after the power cut
    assert fake.versions[-1] == "1.5.0"


@pytest.mark.parametrize("seed_outcome", ["install_failed", "rolled_back"])
async def test_simulated_updates_fail_as_asked(
    tmp_path: Path, server: ImageServer, seed_outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    from fieldwatch.agent.sim_firmware import FirmwareSim

    monkeypatch.setattr(random.Random, "choice", lambda self, options: seed_outcome)
    update = {**message(server), "download_path": None}
    fake = FakeFieldwatch(update)
    base = await fake.start()
    sim = FirmwareSim(failure_rate=1.0, install_s=0.1, directory=tmp_path)

    def settled(f: FakeFieldwatch) -> bool:
        states = [x.get("state") for frames in f.frames for x in frames]
        return "failed" in states or len(f.versions) >= 2

    await _simulate_until(fake, base, sim, settled)
    reports = [x for frames in fake.frames for x in frames if x["type"] == "firmware_state"]
    if seed_outcome == "install_failed":
        assert reports[-1]["state"] == "failed" and reports[-1]["reason"] == "install_failed"
    else:  # it reboots, and comes back on the old version: the server's to call rolled_back
        assert reports[-1]["state"] == "rebooting"
        assert fake.versions == ["1.4.0", "1.4.0"]


def test_the_simulator_reports_only_what_the_server_confirmed() -> None:
    from fieldwatch.agent.progress import Figures
    from fieldwatch.agent.sim_firmware import UpdateTally
    from fieldwatch.agent.simulator import Stats

    tally = UpdateTally()
    for update_id in ("u1", "u2", "u3"):
        tally.seen(update_id)
    tally.outcome = {"u1": "completed", "u2": "failed"}  # u3: the server has not finished it
    tally.reasons = {"u2": "signature_invalid"}
    tally.power_losses = 1
    stats = Stats(transport="ws", devices=3, updates=tally)
    confirmed = Figures(stats, updates_confirmed=True)
    assert "3 firmware updates taken (1 completed, 1 failed per the server)" in confirmed.line()
    assert confirmed.line().endswith(", 1 power cuts mid-download")  # live, not only at the end
    assert confirmed.summary(None)[-2:] == [
        "  Firmware: 3 firmware updates taken (1 completed, 1 failed per the server); "
        "1 power cuts mid-download.",
        "  Why they failed, per the server: 1 signature_invalid.",
    ]
    unknown = Figures(stats, updates_confirmed=False)
    assert "outcome not confirmed" in unknown.line()
    assert "Why they failed" not in "\n".join(unknown.summary(None))
    assert "completed" not in unknown.line()
    assert Figures(Stats(transport="ws", devices=1)).summary(None)[-1].startswith("Done:")
    # No cut yet: named when the run cuts power, left out when it does not.
    tally.power_losses = 0
    assert Figures(stats, power_cuts=True).line().endswith(", 0 power cuts mid-download")
    assert "power cuts" not in Figures(stats).line()


# --- against Fieldwatch's own download endpoint -------------------------------------------


async def test_a_dropped_download_from_fieldwatch_resumes_by_range(
    served: Served, operator: Actor, tmp_path: Path
) -> None:
    from urllib.parse import urlsplit

    image = os.urandom(600_000)
    artifact = await uploaded(served.http, operator, image, version="1.5.0")
    _, headers = await device_with_token(served.http, operator, type="esp32")
    proxy = CuttingProxy(int(urlsplit(served.base_url).port or 0), cut=250_000)
    base = await proxy.start()
    update = update_message(image, f"{base}/nowhere")
    update["download_path"] = f"/api/v1/device/firmware/artifacts/{artifact['id']}"
    device_ = Device()
    token = headers["Authorization"].split()[1]
    try:
        await FirmwareUpdater(tmp_path, device_.hooks(), server=base, token=token).handle(update)
    finally:
        await proxy.stop()
    assert proxy.bodies[0] == 250_000  # what came before the drop
    assert proxy.range_starts() == [None, 250_000]  # the rest was asked for, from there
    assert f'if-range: "{artifact["sha256"]}"' in proxy.heads[1].lower()
    assert proxy.bodies[1] == len(image) - 250_000
    assert device_.installed == [image] and device_.states()[-1] == "rebooting"
