"""``fieldwatch simulate --trust-key`` as a user runs it, against a workspace that takes
only signed firmware: a real ``fieldwatch serve`` process, a signing key registered, signed
artifacts uploaded and rollouts started through the API, and the simulator as another
process whose devices check each update's signature with the keys they were given."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from test_simulate import FIELDWATCH, api, api_key, clean_env, elsewhere, serving, untouched

from artifact_helpers import Signer, register_key, uploaded
from conftest import Actor, Factory
from fieldwatch.agent.cli import read_trust_key
from fieldwatch.core.settings import Settings

__all__ = ["elsewhere"]  # the fixture used here

IMAGE = b"\x7fSIGNED-FIRMWARE" * 20_000
FINAL = {"completed", "failed", "cancelled", "expired"}


def public_pem(signer: Signer) -> bytes:
    return signer.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def signed_artifact(
    http: httpx.AsyncClient, admin: Actor, signer: Signer, version: str
) -> str:
    image = IMAGE + version.encode()
    signature = signer.sign(image, version, ["simulated"])
    artifact = await uploaded(http, admin, image, version=version, device_types="simulated",
                              signature=signature)  # fmt: skip
    assert artifact["signing_key"] == signer.fingerprint
    return str(artifact["id"])


async def start_rollout(http: httpx.AsyncClient, artifact_id: str, device_id: str) -> str:
    body = {"name": f"to {device_id}", "artifact_id": artifact_id, "canary": 0,
            "target": {"device_ids": [device_id]}}  # fmt: skip
    r = await http.post("/api/v1/firmware/rollouts", json=body)
    assert r.status_code == 201, r.text
    rollout_id = str(r.json()["id"])
    r = await http.post(f"/api/v1/firmware/rollouts/{rollout_id}/start")
    assert r.status_code == 200, r.text
    return rollout_id


async def finished(http: httpx.AsyncClient, rollout_id: str, within: float = 60) -> dict:
    """The rollout's one update, once the server has finished it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        r = await http.get("/api/v1/firmware/updates", params={"rollout_id": rollout_id})
        items = r.json()["items"]
        if items and items[0]["state"] in FINAL:
            return dict(items[0])
        await asyncio.sleep(0.3)
    raise AssertionError(f"the update of rollout {rollout_id} did not finish: {items}")


async def simulated_device(http: httpx.AsyncClient, within: float = 30) -> str:
    """SIM-00000, once the simulator has made it and it is online; deployed (rollouts
    take deployed devices)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = (await http.get("/api/v1/devices", params={"q": "SIM-"})).json()["items"]
        if found and found[0]["connectivity"] == "online":
            device_id = str(found[0]["id"])
            if found[0]["status"] != "deployed":
                r = await http.put(f"/api/v1/devices/{device_id}/deploy", json={"location": "lab"})
                assert r.status_code == 200, r.text
            return device_id
        await asyncio.sleep(0.3)
    raise AssertionError("the simulated device did not come online")


async def update_while_simulating(
    cwd: Path, env: dict[str, str], http: httpx.AsyncClient, artifact_id: str, *args: str
) -> tuple[dict, str]:
    """Run one simulated device, roll ``artifact_id`` out to it, end the run with Ctrl-C
    once the server has finished the update; returns (the update, what was printed)."""
    proc = await asyncio.create_subprocess_exec(
        *FIELDWATCH, "simulate", "--devices", "1", "--interval", "0.5", *args, cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        device_id = await simulated_device(http)
        update = await finished(http, await start_rollout(http, artifact_id, device_id))
    finally:
        proc.send_signal(signal.SIGINT)  # the first Ctrl-C: the run ends with its summary
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    printed = out.decode()
    assert proc.returncode == 0, printed
    return update, printed


async def test_trusting_devices_take_signed_firmware_and_refuse_another_key(
    factory: Factory, settings: Settings, tmp_path: Path, elsewhere: Path
) -> None:
    admin = await factory.user("admin")
    signer, stranger = Signer(), Signer()
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "signing.pub.pem").write_bytes(public_pem(signer))  # PEM, as openssl writes it
    (keys / "other.pub").write_text(stranger.public_b64 + "\n")  # base64 of the raw key
    with serving(settings, tmp_path) as server:
        async with api(server, admin) as http:
            await register_key(http, admin, signer)
            r = await http.put("/api/v1/firmware/policy", json={"require_signed": True})
            assert r.status_code == 200, r.text
            first = await signed_artifact(http, admin, signer, "1.1.0")
            second = await signed_artifact(http, admin, signer, "1.2.0")
            env = clean_env(**server.env, FIELDWATCH_API_KEY=await api_key(http))

            trusted = ("--trust-key", str(keys / "other.pub"), "--trust-key",
                       str(keys / "signing.pub.pem"))  # fmt: skip
            update, printed = await update_while_simulating(elsewhere, env, http, first, *trusted)
            assert (update["state"], update["target_version"]) == ("completed", "1.1.0"), update
            assert signer.fingerprint in printed and stranger.fingerprint in printed
            assert ("  Firmware: 1 firmware updates taken (1 completed, 0 failed per the "
                    "server)") in printed  # fmt: skip
            assert "Why they failed" not in printed
            device_id = update["device_id"]
            device = (await http.get(f"/api/v1/devices/{device_id}")).json()
            assert device["firmware_version"] == "1.1.0"

            # Trusting only another key, the device refuses what the workspace signed.
            other = ("--trust-key", str(keys / "other.pub"))
            update, printed = await update_while_simulating(elsewhere, env, http, second, *other)
            assert (update["state"], update["reason"]) == ("failed", "signature_invalid"), update
            assert "(0 completed, 1 failed per the server)" in printed
            assert "Why they failed, per the server: 1 signature_invalid." in printed
            device = (await http.get(f"/api/v1/devices/{device_id}")).json()
            assert device["firmware_version"] == "1.1.0"
    assert untouched(elsewhere)


async def test_a_trust_key_file_without_a_public_key_is_named(tmp_path: Path) -> None:
    signer = Signer()
    private = tmp_path / "signing.pem"
    private.write_bytes(
        signer.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a key\n")
    short = tmp_path / "short.pub"
    short.write_text(signer.public_b64[:20])
    expected = {
        private: f"--trust-key {private}: a private key; give the devices its public key",
        garbage: f"--trust-key {garbage}: expected base64 of the raw 32-byte Ed25519 public key",
        short: f"--trust-key {short}: expected base64 of the raw 32-byte Ed25519 public key",
    }
    for path, message in expected.items():
        proc = await asyncio.to_thread(
            subprocess.run, [*FIELDWATCH, "simulate", "--api-key", "fwk_x", "--trust-key",
                             str(path)], env=clean_env(), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert "cannot reach" not in proc.stderr  # refused before anything is tried


def test_a_trust_key_is_read_in_the_forms_the_workspace_takes(tmp_path: Path) -> None:
    signer = Signer()
    forms = {
        "pem": public_pem(signer).decode(),
        "base64": signer.public_b64,
        "urlsafe-unpadded": base64.urlsafe_b64encode(signer.raw).decode().rstrip("="),
    }
    for name, text in forms.items():
        path = tmp_path / f"{name}.pub"
        path.write_text(f"\n{text}\n")
        assert read_trust_key(path) == signer.raw, name
    binary = tmp_path / "raw.bin"
    binary.write_bytes(b"\xff" + signer.raw)
    with pytest.raises(ValueError, match=rf"--trust-key {binary}: not a text file"):
        read_trust_key(binary)
