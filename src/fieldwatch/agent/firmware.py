"""Taking a firmware update (docs/device-protocol.md, "Firmware updates"), whatever the
transport: the update message in, state reports out through ``FirmwareHooks.report``.

    updater = FirmwareUpdater(directory, hooks, server=..., token=..., public_keys=[raw])
    await updater.handle(message)          # the update message, as the server sent it

The steps: ``acknowledged``; the signature over the canonical manifest checked when the
message carries one (a key the device was not given, or a manifest that does not
describe this image: ``signature_invalid``); the download, resumed from the partial file
a dropped connection or a restart left (``downloading`` with ``bytes`` at most every
second or every tenth of the image); the SHA-256 checked (``checksum_mismatch``, the
partial file deleted); ``downloaded``, ``verified``, ``installing`` (``hooks.install``;
raising: ``install_failed``), ``rebooting``, and ``hooks.reboot``: the device comes back
and reports the version it runs, which is what completes the update on the server.

The message being worked on is saved next to the download, so a device restarted
mid-download continues it (``resume``). The same message again while it is worked on
does nothing; a message for the version already running reports that version instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fieldwatch.agent.fetch import Busy, DownloadError, fetch, partial_path, sha256_file

log = logging.getLogger(__name__)

MANIFEST_KEYS = ("sha256", "size", "version", "device_types", "hardware_versions",
                 "security_version")  # fmt: skip
#: Failures a download attempt survives: tried again (resuming) this many times.
DOWNLOAD_TRIES = 3
PENDING = "pending-update.json"


class UpdateFailed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class FirmwareHooks:
    """What the device does around an update. ``report(update_id, state, fields)``
    sends a state report (``fields``: ``bytes``, ``reason``, ``detail``) and returns once
    the server has it; ``version()`` is the version running; ``announce()`` reports it;
    ``install(path, message)`` installs the verified image (raising: install_failed);
    ``reboot(message)`` restarts the device (it comes back and reports its version)."""

    report: Callable[[str, str, dict[str, Any]], Awaitable[None]]
    version: Callable[[], str | None]
    announce: Callable[[], Awaitable[None]]
    reboot: Callable[[dict[str, Any]], Any]
    install: Callable[[Path, dict[str, Any]], Any] | None = None


def canonical_manifest(manifest: dict[str, Any]) -> bytes:
    """The bytes a firmware signature covers."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_public_key(key: bytes | str | Ed25519PublicKey) -> Ed25519PublicKey:
    """A key as raw 32 bytes, base64 of them, or PEM."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, str):
        text = key.strip()
        if text.startswith("-----BEGIN"):
            loaded = serialization.load_pem_public_key(text.encode())
            if not isinstance(loaded, Ed25519PublicKey):
                raise ValueError("not an Ed25519 public key")
            return loaded
        key = base64.b64decode(text, validate=True)
    return Ed25519PublicKey.from_public_bytes(key)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte key: how update messages name their key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


async def call_handler(handler: Callable[..., Any], *args: Any) -> Any:
    """Call a device's handler, awaiting it if it is a coroutine function."""
    result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class FirmwareUpdater:
    def __init__(
        self,
        directory: str | Path,
        hooks: FirmwareHooks,
        *,
        server: str | None = None,
        token: str | None = None,
        public_keys: Iterable[bytes | str | Ed25519PublicKey] = (),
        require_signature: bool = False,
        progress_every_s: float = 1.0,
        progress_step: float = 0.1,
        timeout_s: float = 30.0,
        download_tries: int = DOWNLOAD_TRIES,
    ) -> None:
        self.directory = Path(directory)
        self.hooks = hooks
        self.server = server.rstrip("/") if server else None
        self.token = token
        self.keys = {fingerprint(k): k for k in map(load_public_key, public_keys)}
        self.require_signature = require_signature
        self.progress_every_s = progress_every_s
        self.progress_step = progress_step
        self.timeout_s = timeout_s
        self.download_tries = download_tries
        self.working: set[str] = set()  # update ids being worked on

    # --- entry points -----------------------------------------------------------------

    async def handle(self, message: dict[str, Any]) -> None:
        """Take an update message; returns when this update is done with (rebooted, or
        failed and reported). A message for an update already being worked on returns
        at once."""
        update_id = str(message.get("update_id") or message.get("command_id") or "")
        if not update_id or update_id in self.working:
            return
        self.working.add(update_id)
        try:
            await self._take(update_id, message)
        finally:
            self.working.discard(update_id)

    async def resume(self) -> None:
        """Continue the update a restart interrupted, if one was saved."""
        try:
            saved = json.loads((self.directory / PENDING).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return
        if isinstance(saved, dict):
            await self.handle(saved)

    # --- the steps --------------------------------------------------------------------

    async def _take(self, update_id: str, message: dict[str, Any]) -> None:
        version = str(message.get("version") or "")
        if version and version == self.hooks.version():
            self._forget()
            await self.hooks.announce()  # already there: what completes the update
            return
        await self._say(update_id, "acknowledged")
        try:
            self._check_signature(message)
            self._save(message)
            image = await self._download(update_id, message)
            await self._say(update_id, "downloaded", bytes=image.stat().st_size)
            await self._verify(image, message)
            await self._say(update_id, "verified")
        except UpdateFailed as exc:
            self._forget()
            await self._say(update_id, "failed", reason=exc.reason, detail=exc.detail)
            return
        await self._install(update_id, image, message)

    async def _install(self, update_id: str, image: Path, message: dict[str, Any]) -> None:
        await self._say(update_id, "installing")
        try:
            if self.hooks.install is not None:
                await call_handler(self.hooks.install, image, message)
        except Exception as exc:
            self._forget(image)
            detail = str(exc) or type(exc).__name__
            await self._say(update_id, "failed", reason="install_failed", detail=detail)
            return
        await self._say(update_id, "rebooting")
        self._forget(image)
        await call_handler(self.hooks.reboot, message)

    def _check_signature(self, message: dict[str, Any]) -> None:
        signature = message.get("signature")
        if not signature:
            if self.require_signature:
                raise UpdateFailed("signature_invalid", "the update is not signed")
            return
        key = self.keys.get(str(message.get("signing_key") or ""))
        if key is None:
            raise UpdateFailed("signature_invalid", "signed with a key this device does not know")
        manifest = message.get("manifest")
        if not isinstance(manifest, dict) or set(manifest) != set(MANIFEST_KEYS):
            raise UpdateFailed("signature_invalid", "no manifest to check the signature over")
        try:
            key.verify(
                base64.b64decode(str(signature), validate=True), canonical_manifest(manifest)
            )
        except (InvalidSignature, binascii.Error, ValueError):
            raise UpdateFailed("signature_invalid", "the signature does not match") from None
        described = (manifest["sha256"], manifest["size"], manifest["version"])
        if described != (message.get("sha256"), message.get("size"), message.get("version")):
            raise UpdateFailed("signature_invalid", "the signed manifest describes another image")

    async def _verify(self, image: Path, message: dict[str, Any]) -> None:
        expected = str(message.get("sha256") or message.get("checksum") or "").lower()
        if await asyncio.to_thread(sha256_file, image) != expected:
            await asyncio.to_thread(image.unlink, missing_ok=True)
            raise UpdateFailed("checksum_mismatch", "the image's SHA-256 is not the expected one")

    # --- downloading ------------------------------------------------------------------

    def _source(self, message: dict[str, Any]) -> tuple[str, dict[str, str]]:
        path = message.get("download_path")
        if self.token and self.server and isinstance(path, str) and path.startswith("/"):
            return self.server + path, {"Authorization": f"Bearer {self.token}"}
        url = message.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise UpdateFailed("download_failed", "the update message has no download address")
        return url, {}

    def target(self, message: dict[str, Any]) -> Path:
        """Where the image goes (its partial file: ``<target>.part``)."""
        return self.directory / f"firmware-{str(message.get('sha256'))[:64]}.bin"

    async def _download(self, update_id: str, message: dict[str, Any]) -> Path:
        url, headers = self._source(message)
        target = self.target(message)
        sha256 = str(message.get("sha256") or "")
        size = message.get("size") if isinstance(message.get("size"), int) else None
        progress = _Progress(self, update_id, size)
        tries = 0
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            while True:
                tries += 1
                try:
                    have = await fetch(http, url, target, size=size, etag=f'"{sha256}"',
                                       headers=headers, on_bytes=progress.update)  # fmt: skip
                    break
                except Busy as exc:
                    failure, pause = str(exc), exc.retry_after
                except (DownloadError, httpx.HTTPError, OSError) as exc:
                    failure, pause = str(exc) or type(exc).__name__, min(2.0**tries, 10.0)
                if tries >= self.download_tries:
                    raise UpdateFailed("download_failed", failure)
                log.info("firmware download %s: %s; trying again", update_id, failure)
                await asyncio.sleep(pause)
        if size is not None and have != size:
            raise UpdateFailed("download_failed", f"got {have} bytes of {size}")
        partial_path(target).replace(target)
        return target

    # --- reporting and the saved message ----------------------------------------------

    async def _say(self, update_id: str, state: str, **fields: Any) -> None:
        """Report a state; a report that cannot be delivered is logged (the server's
        deadline resends the update, and the device picks it up where it is)."""
        try:
            await self.hooks.report(update_id, state, fields)
        except Exception as exc:  # the transport's errors: AgentError, ConnectionError, …
            log.info("firmware update %s: could not report %s: %s", update_id, state, exc)

    def _save(self, message: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / PENDING).write_text(json.dumps(message), encoding="utf-8")

    def _forget(self, image: Path | None = None) -> None:
        (self.directory / PENDING).unlink(missing_ok=True)
        if image is not None:
            image.unlink(missing_ok=True)


class _Progress:
    """``downloading`` reports: the first at once, then after a second or a tenth of the
    image more, whichever comes first; never one per chunk."""

    def __init__(self, updater: FirmwareUpdater, update_id: str, size: int | None) -> None:
        self.updater, self.update_id = updater, update_id
        self.step = int(size * updater.progress_step) if size else None
        self.at: float | None = None
        self.told = 0

    async def update(self, have: int) -> None:
        now = time.monotonic()
        due = self.at is None or now - self.at >= self.updater.progress_every_s
        if not due and (self.step is None or have - self.told < max(1, self.step)):
            return
        self.at, self.told = now, have
        with contextlib.suppress(Exception):
            await self.updater._say(self.update_id, "downloading", bytes=have)
