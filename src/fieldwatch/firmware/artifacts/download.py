"""What firmware downloads need in each process: signed links, the cap on downloads at
once, and the blob store.

A signed link (``/api/v1/firmware/download/<artifact>?device=&expires=&sig=``) carries
an HMAC-SHA256 over ``artifact_id|device_id|expires`` under a key derived from the
installation's secret (never the secret itself), so it is good for one device, one
artifact, until it expires, and carries no token. ``FirmwareFiles`` is built once per
process by the runtime; the update-message builder takes its ``signer``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fieldwatch.core.settings import Settings
from fieldwatch.firmware.artifacts.blobs import LocalBlobStore
from fieldwatch.firmware.artifacts.errors import DownloadsBusy

DOWNLOAD_PATH = "/api/v1/firmware/download/{artifact_id}"
AGENT_DOWNLOAD_PATH = "/api/v1/device/firmware/artifacts/{artifact_id}"
_KEY_LABEL = b"fieldwatch firmware-download v1"


def agent_download_path(artifact_id: uuid.UUID | str) -> str:
    """The path a device fetches an artifact from with its agent token."""
    return AGENT_DOWNLOAD_PATH.format(artifact_id=artifact_id)


class DownloadSigner:
    """Signs and checks download links (key derived from the installation's secret)."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()

    def signature(self, artifact_id: uuid.UUID, device_id: uuid.UUID, expires: int) -> str:
        message = f"{artifact_id}|{device_id}|{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def valid(
        self, artifact_id: uuid.UUID, device_id: uuid.UUID, expires: int, sig: str, now: float
    ) -> bool:
        """The link is this device's for this artifact and has not expired."""
        expected = self.signature(artifact_id, device_id, expires)
        given = sig.lower().encode("utf-8", "replace")
        return hmac.compare_digest(expected.encode(), given) and now <= expires

    def url(
        self, settings: Settings, artifact_id: uuid.UUID, device_id: uuid.UUID, now: datetime
    ) -> str:
        """An absolute link, valid ``settings.firmware_url_ttl_s`` from ``now``."""
        expires = int(now.timestamp()) + settings.firmware_url_ttl_s
        query = urlencode(
            {
                "device": str(device_id),
                "expires": expires,
                "sig": self.signature(artifact_id, device_id, expires),
            }
        )
        path = DOWNLOAD_PATH.format(artifact_id=artifact_id)
        return f"{settings.resolved_public_url}{path}?{query}"


def signed_download_url(
    settings: Settings, secret: str, artifact_id: uuid.UUID, device_id: uuid.UUID, now: datetime
) -> str:
    """A signed link (see ``DownloadSigner``; build one signer and keep it where many
    links are made)."""
    return DownloadSigner(secret).url(settings, artifact_id, device_id, now)


class DownloadGate:
    """At most ``concurrency`` downloads send at once in this process; one that waited
    ``queue_s`` for its turn is answered 503 with ``Retry-After``."""

    def __init__(self, concurrency: int, queue_s: float) -> None:
        self.concurrency = max(1, concurrency)
        self.queue_s = max(0.0, queue_s)
        self._slots = asyncio.Semaphore(self.concurrency)
        self.active = 0
        self.waiting = 0
        self.refused = 0

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.queue_s))

    async def acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: no wait
        else:
            self.waiting += 1
            try:
                async with asyncio.timeout(self.queue_s):
                    await self._slots.acquire()
            except TimeoutError:
                self.refused += 1
                retry = self.retry_after_s
                raise DownloadsBusy(
                    f"Too many firmware downloads at once; retry in {retry} s (resume with Range).",
                    headers={"Retry-After": str(retry)},
                    retry_after=retry,
                ) from None
            finally:
                self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._slots.release()


@dataclass(frozen=True, slots=True)
class FirmwareFiles:
    """The process's blob store, link signer and download cap."""

    settings: Settings
    store: LocalBlobStore
    signer: DownloadSigner
    gate: DownloadGate

    @classmethod
    def build(cls, settings: Settings, secret: str) -> FirmwareFiles:
        return cls(
            settings=settings,
            store=LocalBlobStore(settings.resolved_firmware_dir),
            signer=DownloadSigner(secret),
            gate=DownloadGate(
                settings.firmware_download_concurrency, settings.firmware_download_queue_s
            ),
        )


class DownloadsCollector(Collector):
    """The download cap's figures for Prometheus; ``files`` returns the process's
    ``FirmwareFiles`` (None before start-up)."""

    def __init__(self, files: Callable[[], FirmwareFiles | None]) -> None:
        self.files = files

    def collect(self) -> Iterator[Any]:
        files = self.files()
        gate = files.gate if files is not None else None
        yield GaugeMetricFamily(
            "fieldwatch_firmware_downloads_active",
            "Firmware downloads sending now (at most firmware_download_concurrency)",
            value=gate.active if gate else 0,
        )
        yield GaugeMetricFamily(
            "fieldwatch_firmware_downloads_waiting",
            "Firmware downloads waiting for a free slot",
            value=gate.waiting if gate else 0,
        )
        yield CounterMetricFamily(
            "fieldwatch_firmware_downloads_refused",
            "Firmware downloads answered 503 after waiting firmware_download_queue_s",
            value=gate.refused if gate else 0,
        )
