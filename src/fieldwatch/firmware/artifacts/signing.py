"""Ed25519 signatures over an artifact's manifest (see docs/device-protocol.md).

The signature covers the canonical manifest bytes: the manifest's six keys as JSON with
sorted keys, no spaces, UTF-8. Devices verify the same bytes with the public key whose
fingerprint (SHA-256 hex of the raw 32 bytes) the update message names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from fieldwatch.firmware.compat import ArtifactLike

MANIFEST_KEYS = (
    "sha256", "size", "version", "device_types", "hardware_versions", "security_version",
)  # fmt: skip
RAW_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class ManifestSource(ArtifactLike, Protocol):
    """An artifact, or an upload about to become one: what its manifest is made of."""

    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...


def manifest(artifact: ManifestSource) -> dict[str, Any]:
    """The manifest of an artifact (or of an upload about to become one)."""
    return {
        "sha256": artifact.sha256,
        "size": artifact.size,
        "version": artifact.version,
        "device_types": list(artifact.device_types),
        "hardware_versions": list(artifact.hardware_versions),
        "security_version": artifact.security_version,
    }


def canonical_manifest(manifest: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers."""
    picked = {key: manifest[key] for key in MANIFEST_KEYS}
    return json.dumps(picked, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_public_key(text: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key given as base64 of those bytes or as
    PEM (SubjectPublicKeyInfo). ValueError for anything else."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = load_pem_public_key(text.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError("not a readable PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        return key.public_bytes_raw()
    raw = decode_base64(text)
    if raw is None or len(raw) != RAW_KEY_BYTES:
        raise ValueError("expected base64 of the raw 32-byte Ed25519 public key, or PEM")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def fingerprint(raw_key: bytes) -> str:
    return hashlib.sha256(raw_key).hexdigest()


def decode_base64(text: str) -> bytes | None:
    """Standard or URL-safe base64 (padding optional); None when it is not base64."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return None


def verifies(raw_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
