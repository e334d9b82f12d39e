from __future__ import annotations

from fieldwatch.core.errors import Conflict, NotFound


class DeviceNotFound(NotFound):
    slug, title = "device-not-found", "Device not found"


class DuplicateSerial(Conflict):
    slug, title = "duplicate-serial-number", "Serial number already in use"


class DeviceRetired(Conflict):
    slug, title = "device-retired", "Device is retired"
