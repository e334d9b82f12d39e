from __future__ import annotations

from fieldwatch.core.errors import Conflict, NotFound, ValidationFailed


class UpdateNotFound(NotFound):
    slug, title = "firmware-update-not-found", "Firmware update not found"


class ArtifactNotFound(NotFound):
    slug, title = "firmware-artifact-not-found", "Firmware artifact not found"


class UpdateRefused(Conflict):
    """The artifact may not go to the device (``compat.refusal``), or the workspace's
    policy refuses it."""

    slug, title = "firmware-update-refused", "Firmware update refused"


class UpdateRunning(Conflict):
    slug, title = "firmware-update-running", "A firmware update is already running"


class UpdateNotCancellable(Conflict):
    slug, title = "firmware-update-not-cancellable", "Firmware update can not be cancelled"


class BadReport(ValidationFailed):
    slug, title = "invalid-firmware-state", "Invalid firmware state report"
