"""Encryption at rest of connection credentials (OAuth tokens, PKCE verifiers).

A key ring of 256-bit AES-GCM keys: the first key seals, every key opens, so keys can
rotate (put a new key first, re-seal, then drop the old one). A key's id is derived from
the key (the first 8 hex digits of its SHA-256), so the sealed text names the key that
opens it without the ring having to name its keys.

Sealed text: ``fw1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``. The caller gives a
context (for example the workspace and connection ids) that is authenticated with the
data, so a sealed value copied into another row does not open there.

Keys come from ``FIELDWATCH_ENCRYPTION_KEY`` (comma-separated base64url keys, the newest
first) or, when that is unset, from a file in the data directory that is generated on
first use (like the JWT signing key), readable by its owner only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fieldwatch.core.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "encryption.keys"
VERSION = "fw1"
KEY_BYTES = 32
NONCE_BYTES = 12


class EncryptionKeyError(ValueError):
    """A key that is not 32 bytes of base64url, or no key at all."""


class SealedValueError(ValueError):
    """A sealed value that no key of the ring opens (wrong key, context or tampered)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def new_key() -> str:
    """A new random key, as the base64url text the settings and the key file hold."""
    return _b64(secrets.token_bytes(KEY_BYTES))


def parse_keys(text: str) -> list[bytes]:
    keys: list[bytes] = []
    for n, part in enumerate(p.strip() for p in text.replace("\n", ",").split(",")):
        if not part:
            continue
        try:
            key = _unb64(part)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise EncryptionKeyError(
                f"encryption key #{n + 1} is not {KEY_BYTES} bytes of base64url "
                "(make one with: python -c 'import secrets,base64;"
                "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())')"
            )
        keys.append(key)
    if not keys:
        raise EncryptionKeyError("no encryption key given")
    return keys


@dataclass(frozen=True, slots=True)
class KeyRing:
    keys: tuple[bytes, ...]

    @classmethod
    def of(cls, text: str) -> KeyRing:
        return cls(tuple(parse_keys(text)))

    @property
    def current_id(self) -> str:
        return key_id(self.keys[0])

    @property
    def ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    def seal(self, plaintext: bytes, context: str) -> str:
        key = self.keys[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, context.encode())
        return f"{VERSION}.{key_id(key)}.{_b64(nonce + sealed)}"

    def open(self, sealed: str, context: str) -> bytes:
        try:
            version, kid, body = sealed.split(".", 2)
            blob = _unb64(body)
        except (ValueError, binascii.Error):
            raise SealedValueError("not a sealed value") from None
        if version != VERSION or len(blob) <= NONCE_BYTES:
            raise SealedValueError("not a sealed value")
        for key in self.keys:
            if key_id(key) != kid:
                continue
            try:
                return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
            except InvalidTag:
                break
        raise SealedValueError(f"no key of the ring opens this value (key id {kid})")

    def needs_reseal(self, sealed: str) -> bool:
        """Sealed with a key other than the current one (after a rotation)."""
        parts = sealed.split(".", 2)
        return len(parts) != 3 or parts[1] != self.current_id


def load_key_ring(settings: Settings) -> KeyRing:
    """The configured keys, else the generated per-install key file in the data dir."""
    if settings.encryption_key:
        return KeyRing.of(settings.encryption_key)
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            try:
                os.write(fd, (new_key() + "\n").encode())
            finally:
                os.close(fd)
            log.info("generated a new encryption key in the data directory",
                     extra={"path": str(path)})  # fmt: skip
    return KeyRing.of(path.read_text())


def rotate_key_file(settings: Settings) -> KeyRing:
    """Put a new key first in the data directory's key file (older keys still open)."""
    if settings.encryption_key:
        raise EncryptionKeyError(
            "FIELDWATCH_ENCRYPTION_KEY is set: rotate by putting a new key first in it"
        )
    ring = load_key_ring(settings)
    path = Path(settings.data_dir) / KEY_FILE
    text = "\n".join([new_key(), *(_b64(k) for k in ring.keys)]) + "\n"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return KeyRing.of(text)
