"""Firmware test helpers: uploads over the API, Ed25519 keys and signatures made the
way a vendor's build system would (the contract's canonical manifest, written out
here, not taken from the server's code)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import Actor

ARTIFACTS = "/api/v1/firmware/artifacts"


async def upload(
    http: httpx.AsyncClient,
    actor: Actor,
    data: bytes = b"\x7fFIRMWARE" * 1000,
    *,
    filename: str = "fw.bin",
    **fields: Any,
) -> httpx.Response:
    form: dict[str, Any] = {"version": "1.0.0", "device_types": "esp32", **fields}
    form = {k: v for k, v in form.items() if v is not None}
    files = {"file": (filename, data, "application/octet-stream")}
    return await http.post(ARTIFACTS, data=form, files=files, headers=actor.headers)


async def uploaded(http: httpx.AsyncClient, actor: Actor, data: bytes, **fields: Any) -> dict:
    r = await upload(http, actor, data, **fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


class Signer:
    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.raw = self.private.public_key().public_bytes_raw()

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.raw).decode()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def sign(
        self,
        data: bytes,
        version: str,
        device_types: list[str],
        hardware_versions: list[str] | None = None,
        security_version: int = 0,
    ) -> str:
        manifest = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "version": version,
            "device_types": device_types,
            "hardware_versions": hardware_versions or [],
            "security_version": security_version,
        }
        canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return base64.b64encode(self.private.sign(canonical.encode("utf-8"))).decode()


async def register_key(http: httpx.AsyncClient, admin: Actor, signer: Signer, name: str = "ci"):
    r = await http.post(
        "/api/v1/firmware/signing-keys",
        json={"name": name, "public_key": signer.public_b64},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())
