"""Why readings of a whole request are refused (a batch of several devices' items
refuses item by item instead, see ``Batch.refuse``)."""

from __future__ import annotations

from fieldwatch.core.errors import Conflict, Forbidden
from fieldwatch.devices.errors import DeviceNotFound


class UnknownDevice(DeviceNotFound):
    """No such device in the workspace (any more)."""


class ReadingsRefused(Conflict):
    """The device is in a lifecycle status whose readings are refused (retired)."""


class NotOwnDevice(Forbidden):
    """A device credential writing another device's data."""
