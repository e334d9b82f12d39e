"""The states of a firmware update (the device protocol's), their order, deadlines and
failure reasons."""

from __future__ import annotations

from datetime import datetime, timedelta

from fieldwatch.core.settings import Settings

PENDING = "pending"
SENT = "sent"
ACKNOWLEDGED = "acknowledged"
DOWNLOADING = "downloading"
DOWNLOADED = "downloaded"
VERIFIED = "verified"
INSTALLING = "installing"
REBOOTING = "rebooting"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"

#: The way forward, in order: a report at or before the present state is ignored.
ORDER = (
    PENDING, SENT, ACKNOWLEDGED, DOWNLOADING, DOWNLOADED, VERIFIED, INSTALLING, REBOOTING,
    COMPLETED,
)  # fmt: skip
RANK = {state: i for i, state in enumerate(ORDER)}
FINAL = (COMPLETED, FAILED, CANCELLED, EXPIRED)
OPEN = ORDER[:-1]
STATES = (*ORDER, FAILED, CANCELLED, EXPIRED)
#: What a device may report (never ``completed``: the version it runs says that).
REPORTABLE = (ACKNOWLEDGED, DOWNLOADING, DOWNLOADED, VERIFIED, INSTALLING, REBOOTING, FAILED)
#: From here on an update is no longer cancelled (the device is replacing its image).
NOT_CANCELLABLE = (INSTALLING, REBOOTING)

DOWNLOAD_FAILED = "download_failed"
CHECKSUM_MISMATCH = "checksum_mismatch"
SIGNATURE_INVALID = "signature_invalid"
INCOMPATIBLE = "incompatible"
INSTALL_FAILED = "install_failed"
ROLLED_BACK = "rolled_back"
TIMEOUT = "timeout"
REASONS = (
    DOWNLOAD_FAILED, CHECKSUM_MISMATCH, SIGNATURE_INVALID, INCOMPATIBLE, INSTALL_FAILED,
    ROLLED_BACK, TIMEOUT,
)  # fmt: skip
#: Failures tried again while tries are left.
RETRYABLE = (DOWNLOAD_FAILED, CHECKSUM_MISMATCH, TIMEOUT)


def timeout_s(state: str, settings: Settings) -> float | None:
    """How long an update may stay in ``state``; None: no deadline (pending waits for
    its device until the command's TTL; final states)."""
    if state in (SENT, ACKNOWLEDGED):
        return settings.firmware_timeout_acknowledge_s
    if state == DOWNLOADING:
        return settings.firmware_timeout_download_s
    if state in (DOWNLOADED, VERIFIED, INSTALLING):
        return settings.firmware_timeout_install_s
    if state == REBOOTING:
        return settings.firmware_timeout_reboot_s
    return None


def deadline(state: str, settings: Settings, now: datetime) -> datetime | None:
    seconds = timeout_s(state, settings)
    return None if seconds is None else now + timedelta(seconds=seconds)
