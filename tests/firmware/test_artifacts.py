"""Firmware artifacts over the API: uploads (hashed and counted by the server, limited,
checked against signing keys and the signing policy), the list, reads, roles, and
deletion that never pulls an artifact from under a rollout or an update."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from artifact_helpers import ARTIFACTS, Signer, register_key, upload, uploaded
from conftest import Actor, Factory, create_device, problem
from fieldwatch.commands.models import Command
from fieldwatch.core.clock import utcnow
from fieldwatch.firmware.models import FirmwareUpdate, Rollout
from fieldwatch.runtime import Runtime

KEYS = "/api/v1/firmware/signing-keys"
POLICY = "/api/v1/firmware/policy"


def blob_file(runtime: Runtime, sha256: str) -> Path:
    return runtime.settings.resolved_firmware_dir / "sha256" / sha256[:2] / sha256


def leftovers(runtime: Runtime) -> list[str]:
    tmp = runtime.settings.resolved_firmware_dir / "tmp"
    return os.listdir(tmp) if tmp.exists() else []


async def test_upload_is_hashed_counted_and_stored(client, runtime: Runtime, operator: Actor):
    data = os.urandom(300_000)
    r = await upload(
        client, operator, data, filename="sensor-1.2.0.bin", version="1.2.0",
        device_types="esp32, esp32-s3", hardware_versions="rev-a", min_from_version="1.0.0",
        security_version="2", notes="fixes the watchdog",
    )  # fmt: skip
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data)
    assert body["device_types"] == ["esp32", "esp32-s3"]
    assert body["hardware_versions"] == ["rev-a"]
    assert body["min_from_version"] == "1.0.0" and body["security_version"] == 2
    assert body["filename"] == "sensor-1.2.0.bin" and body["notes"] == "fixes the watchdog"
    assert body["signature"] is None and body["signing_key"] is None
    assert body["created_by"] == f"user:{operator.email}"
    assert body["manifest"] == {
        "sha256": body["sha256"], "size": len(data), "version": "1.2.0",
        "device_types": ["esp32", "esp32-s3"], "hardware_versions": ["rev-a"],
        "security_version": 2,
    }  # fmt: skip
    assert blob_file(runtime, body["sha256"]).read_bytes() == data
    assert leftovers(runtime) == []

    got = await client.get(f"{ARTIFACTS}/{body['id']}", headers=operator.headers)
    assert got.status_code == 200 and got.json() == body
    content = await client.get(f"{ARTIFACTS}/{body['id']}/content", headers=operator.headers)
    assert content.status_code == 200 and content.content == data
    assert content.headers["etag"] == f'"{body["sha256"]}"'


async def test_device_types_repeated_and_list_filtered_newest_first(client, operator: Actor):
    first = await uploaded(client, operator, b"a", version="1.0.0", device_types=["esp32", "nrf"])
    second = await uploaded(client, operator, b"b", version="1.1.0", device_types="nrf")
    third = await uploaded(client, operator, b"c", version="2.0.0", device_types="esp32")
    assert first["device_types"] == ["esp32", "nrf"]

    r = await client.get(ARTIFACTS, headers=operator.headers)
    assert r.status_code == 200
    page = r.json()
    assert [a["id"] for a in page["items"]] == [third["id"], second["id"], first["id"]]
    assert page["total"] == 3 and page["limit"] == 50 and page["offset"] == 0

    r = await client.get(ARTIFACTS, params={"device_type": "esp32"}, headers=operator.headers)
    assert [a["version"] for a in r.json()["items"]] == ["2.0.0", "1.0.0"]
    r = await client.get(
        ARTIFACTS, params={"device_type": "nrf", "limit": 1, "offset": 1}, headers=operator.headers
    )
    assert [a["version"] for a in r.json()["items"]] == ["1.0.0"] and r.json()["total"] == 2


async def test_same_version_twice_is_a_conflict(client, runtime: Runtime, operator: Actor):
    await uploaded(client, operator, b"one", version="3.0.0")
    body = problem(await upload(client, operator, b"two", version="3.0.0"), 409)
    assert "3.0.0" in body["detail"]
    assert not blob_file(runtime, hashlib.sha256(b"two").hexdigest()).exists()
    assert leftovers(runtime) == []


async def test_upload_beyond_the_limit_is_refused(client, runtime: Runtime, operator: Actor):
    runtime.settings.firmware_max_upload_bytes = 100_000
    body = problem(await upload(client, operator, os.urandom(100_001)), 413)
    assert body["limit"] == 100_000
    assert leftovers(runtime) == []
    r = await client.get(ARTIFACTS, headers=operator.headers)
    assert r.json()["total"] == 0
    await uploaded(client, operator, os.urandom(100_000))  # exactly the limit is fine


async def test_bad_fields_are_field_errors(client, runtime: Runtime, operator: Actor):
    r = await upload(client, operator, version=None, device_types=None, security_version="-1")
    body = problem(r, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"version", "device_types", "security_version"}
    body = problem(await upload(client, operator, colour="red"), 422)
    assert [e["field"] for e in body["errors"]] == ["colour"]
    r = await client.post(
        ARTIFACTS, data={"version": "1.0.0", "device_types": "esp32"}, headers=operator.headers,
        files={"other": ("x.bin", b"x")},
    )  # fmt: skip
    assert problem(r, 422)["errors"][0]["field"] == "file"
    assert problem(await upload(client, operator, b""), 422)["errors"][0]["field"] == "file"
    r = await client.post(ARTIFACTS, json={"version": "1"}, headers=operator.headers)
    problem(r, 415)
    assert leftovers(runtime) == []


async def test_roles_and_workspaces(client, factory: Factory, operator: Actor, viewer: Actor):
    problem(await upload(client, viewer), 403)
    artifact = await uploaded(client, operator, b"fw")
    r = await client.get(ARTIFACTS, headers=viewer.headers)
    assert r.json()["total"] == 1
    problem(await client.get(f"{ARTIFACTS}/{artifact['id']}/content", headers=viewer.headers), 403)
    problem(await client.delete(f"{ARTIFACTS}/{artifact['id']}", headers=viewer.headers), 403)

    stranger = await factory.user("admin", workspace="globex")
    for method, path in [
        ("GET", f"{ARTIFACTS}/{artifact['id']}"),
        ("GET", f"{ARTIFACTS}/{artifact['id']}/content"),
        ("DELETE", f"{ARTIFACTS}/{artifact['id']}"),
    ]:
        problem(await client.request(method, path, headers=stranger.headers), 404)
    assert (await client.get(ARTIFACTS, headers=stranger.headers)).json()["total"] == 0
    # The same version in another workspace is another artifact.
    await uploaded(client, stranger, b"fw")


async def test_signing_keys(client, admin: Actor, operator: Actor):
    signer = Signer()
    key = await register_key(client, admin, signer)
    assert key["fingerprint"] == signer.fingerprint and key["revoked_at"] is None
    assert key["public_key"] == signer.public_b64
    problem(await client.post(KEYS, json={"name": "x", "public_key": signer.public_b64},
                              headers=admin.headers), 409)  # fmt: skip
    pem = Signer()
    pem_text = pem.private.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    r = await client.post(
        KEYS, json={"name": "pem", "public_key": pem_text.decode()}, headers=admin.headers
    )
    assert r.status_code == 201 and r.json()["fingerprint"] == pem.fingerprint
    body = problem(
        await client.post(KEYS, json={"name": "bad", "public_key": "AAAA"}, headers=admin.headers),
        422,
    )
    assert body["errors"][0]["field"] == "public_key"
    problem(await client.post(KEYS, json={"name": "op", "public_key": Signer().public_b64},
                              headers=operator.headers), 403)  # fmt: skip

    r = await client.get(KEYS, headers=operator.headers)
    assert [k["name"] for k in r.json()["items"]] == ["ci", "pem"] and r.json()["total"] == 2
    problem(await client.delete(f"{KEYS}/{key['id']}", headers=operator.headers), 403)
    r = await client.delete(f"{KEYS}/{key['id']}", headers=admin.headers)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    problem(await client.delete(f"{KEYS}/{uuid.uuid4()}", headers=admin.headers), 404)


async def test_signed_uploads(client, admin: Actor, operator: Actor):
    signer, other = Signer(), Signer()
    key = await register_key(client, admin, signer)
    data = os.urandom(5000)

    sig = signer.sign(data, "1.0.0", ["esp32"])
    body = await uploaded(client, operator, data, signature=sig, signing_key=key["id"])
    assert body["signature"] == sig and body["signing_key"] == signer.fingerprint
    assert body["signing_key_id"] == key["id"]
    # By fingerprint, and with no key named (the workspace's active keys are tried).
    sig = signer.sign(data, "1.0.1", ["esp32"], ["rev-b"], 3)
    body = await uploaded(
        client, operator, data, version="1.0.1", hardware_versions="rev-b",
        security_version="3", signature=sig, signing_key=signer.fingerprint,
    )  # fmt: skip
    assert body["signing_key"] == signer.fingerprint
    sig = signer.sign(data, "1.0.2", ["esp32"])
    assert (await uploaded(client, operator, data, version="1.0.2", signature=sig))["signature"]

    # A signature over another manifest (other version), by another key, or with an
    # unknown key named: refused.
    wrong = signer.sign(data, "9.9.9", ["esp32"])
    body = problem(await upload(client, operator, data, version="1.0.3", signature=wrong), 422)
    assert body["errors"][0]["type"] == "signature_invalid"
    foreign = other.sign(data, "1.0.3", ["esp32"])
    body = problem(
        await upload(client, operator, data, version="1.0.3", signature=foreign,
                     signing_key=key["id"]), 422,
    )  # fmt: skip
    assert body["type"].endswith("signature-invalid")
    body = problem(
        await upload(client, operator, data, version="1.0.3", signature=foreign,
                     signing_key=other.fingerprint), 422,
    )  # fmt: skip
    assert body["errors"][0]["field"] == "signing_key"
    problem(await upload(client, operator, data, version="1.0.3", signature="not base64!"), 422)

    # A revoked key verifies nothing new.
    await client.delete(f"{KEYS}/{key['id']}", headers=admin.headers)
    sig = signer.sign(data, "1.0.3", ["esp32"])
    problem(await upload(client, operator, data, version="1.0.3", signature=sig), 422)
    r = await client.get(ARTIFACTS, headers=operator.headers)
    assert r.json()["total"] == 3


async def test_policy_requires_signed_firmware(client, admin: Actor, operator: Actor):
    r = await client.get(POLICY, headers=operator.headers)
    assert r.json() == {"require_signed": False, "updated_by": None, "updated_at": None}
    problem(await client.put(POLICY, json={"require_signed": True}, headers=operator.headers), 403)
    r = await client.put(POLICY, json={"require_signed": True}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["require_signed"] is True
    assert r.json()["updated_by"] == f"user:{admin.email}"

    body = problem(await upload(client, operator, b"unsigned"), 422)
    assert body["errors"][0]["type"] == "signature_required"
    assert "signed" in body["detail"]
    signer = Signer()
    await register_key(client, admin, signer)
    sig = signer.sign(b"signed", "1.0.0", ["esp32"])
    await uploaded(client, operator, b"signed", signature=sig)

    await client.put(POLICY, json={"require_signed": False}, headers=admin.headers)
    await uploaded(client, operator, b"unsigned", version="1.0.1")


async def test_delete_frees_the_blob_once_unreferenced(client, runtime: Runtime, operator: Actor):
    data = os.urandom(2000)
    first = await uploaded(client, operator, data, version="1.0.0")
    second = await uploaded(client, operator, data, version="1.0.1")  # same bytes
    path = blob_file(runtime, first["sha256"])

    r = await client.delete(f"{ARTIFACTS}/{first['id']}", headers=operator.headers)
    assert r.status_code == 204
    problem(await client.get(f"{ARTIFACTS}/{first['id']}", headers=operator.headers), 404)
    assert path.read_bytes() == data  # the other artifact still has it
    r = await client.delete(f"{ARTIFACTS}/{second['id']}", headers=operator.headers)
    assert r.status_code == 204
    assert not path.exists()


async def test_delete_refused_while_a_rollout_or_update_needs_it(
    client, runtime: Runtime, operator: Actor
):
    artifact = await uploaded(client, operator, b"fw")
    artifact_id = uuid.UUID(artifact["id"])
    async with runtime.uow() as uow:
        rollout = Rollout(
            workspace_id=operator.workspace_id, name="r", artifact_id=artifact_id, canary=1,
            soak_s=0, failure_threshold=0.1, min_finished=1, rate_per_minute=10, max_tries=3,
            created_by="test",
        )  # fmt: skip
        uow.session.add(rollout)
        await uow.commit()
    body = problem(await client.delete(f"{ARTIFACTS}/{artifact_id}", headers=operator.headers), 409)
    assert "rollout" in body["detail"]

    device = await create_device(client, operator, type="esp32")
    async with runtime.uow() as uow:
        stored = await uow.session.get(Rollout, rollout.id)
        assert stored is not None
        await uow.session.delete(stored)
        command = Command(
            workspace_id=operator.workspace_id, device_id=uuid.UUID(device["id"]),
            command="firmware_update", params={}, ttl_s=3600, max_attempts=3,
            expires_at=utcnow() + timedelta(hours=1), created_by="test",
        )  # fmt: skip
        uow.session.add(command)
        await uow.session.flush()
        update = FirmwareUpdate(
            command_id=command.id, workspace_id=operator.workspace_id, device_id=command.device_id,
            artifact_id=artifact_id, target_version="1.0.0", state="downloading", max_tries=3,
        )  # fmt: skip
        uow.session.add(update)
        await uow.commit()
    body = problem(await client.delete(f"{ARTIFACTS}/{artifact_id}", headers=operator.headers), 409)
    assert "device update" in body["detail"]

    async with runtime.uow() as uow:
        stored_update = await uow.session.get(FirmwareUpdate, command.id)
        assert stored_update is not None
        stored_update.state = "completed"
        await uow.commit()
    body = problem(await client.delete(f"{ARTIFACTS}/{artifact_id}", headers=operator.headers), 409)
    assert "history" in body["detail"]
    assert blob_file(runtime, artifact["sha256"]).exists()
