"""Process roles: which part of the platform a ``fieldwatch serve`` process runs.

- ``all`` (the default): everything in one process, embedded defaults allowed;
- ``api``: the HTTP API (device uploads and downloads included), the console and
  Socket.IO;
- ``gateway``: device sessions, the WebSocket path of its port and the device listener
  (``FIELDWATCH_DEVICE_WS_PORT``), the MQTT gateway; it resends the commands its devices
  did not acknowledge;
- ``worker``: periodic and background work: presence sweeps, retention, command expiry,
  firmware deadlines, rollouts, sync scheduling and runs, vendor subscriptions, webhook
  deliveries, offline alerts.

Each role scales horizontally, so each needs the components its processes share: a
PostgreSQL database, RabbitMQ (events, commands to the gateway holding a device) and
Redis (presence, latest values), and for a gateway that runs MQTT an external broker.
``missing_shared`` names what is not configured; ``fieldwatch serve`` refuses to start
without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fieldwatch.core.settings import Settings


class ProcessRole(StrEnum):
    all = "all"
    api = "api"
    gateway = "gateway"
    worker = "worker"


@dataclass(frozen=True, slots=True)
class Duties:
    """What a process of a role runs."""

    #: The HTTP API, the console, the API docs and Socket.IO.
    api: bool
    #: Device sessions: WebSocket (its port's path, the device listener), MQTT.
    devices: bool
    #: Periodic and background jobs.
    jobs: bool


DUTIES = {
    ProcessRole.all: Duties(api=True, devices=True, jobs=True),
    ProcessRole.api: Duties(api=True, devices=False, jobs=False),
    ProcessRole.gateway: Duties(api=False, devices=True, jobs=False),
    ProcessRole.worker: Duties(api=False, devices=False, jobs=True),
}


def duties_of(role: str) -> Duties:
    return DUTIES[ProcessRole(role)]


def _postgresql(url: str) -> bool:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return scheme in ("postgresql", "postgres")


def missing_shared(settings: Settings) -> list[str]:
    """The settings a role lacks for its shared components, each with what it is for;
    empty for ``all`` (one process may run on embedded defaults)."""
    role = ProcessRole(settings.role)
    if role is ProcessRole.all:
        return []
    missing = []
    if not _postgresql(settings.resolved_database_url):
        missing.append(
            "FIELDWATCH_DATABASE_URL: a PostgreSQL database (SQLite belongs to one process)"
        )
    if not settings.rabbitmq_url:
        missing.append(
            "FIELDWATCH_RABBITMQ_URL: the event bus the processes share (commands reach the "
            "gateway holding the device, events reach the workers)"
        )
    if not settings.redis_url:
        missing.append("FIELDWATCH_REDIS_URL: presence and latest values shared by the processes")
    if role is ProcessRole.gateway and settings.mqtt_embedded and not settings.mqtt_url:
        missing.append(
            "FIELDWATCH_MQTT_URL: an external MQTT broker the gateways share (the embedded "
            "one belongs to one process), or FIELDWATCH_MQTT_EMBEDDED=false for no MQTT"
        )
    return missing


def unshared_secrets(settings: Settings) -> list[str]:
    """Keys a part of an installation generates into its data directory when they are not
    set: every process must then share that directory, or they disagree."""
    if ProcessRole(settings.role) is ProcessRole.all:
        return []
    names = {"FIELDWATCH_JWT_SECRET": settings.jwt_secret,
             "FIELDWATCH_ENCRYPTION_KEY": settings.encryption_key}  # fmt: skip
    return [name for name, value in names.items() if not value]
