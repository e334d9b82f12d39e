"""The device edge: what the device-facing transports need of the platform, and what
they share in one process.

The app builds one ``DeviceEdge`` from its runtime (``app.device_edge``) and hands it to
the WebSocket gateway (``app.state.edge``), the device listener and the MQTT gateway;
transports take the edge, never the runtime. Readings go to ``ingest``, the process's
one entry point for them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fieldwatch.auth.service import AuthService
from fieldwatch.auth.throttle import LoginThrottle
from fieldwatch.auth.tokens import TokenCodec
from fieldwatch.commands.delivery import CommandDispatcher
from fieldwatch.core.batching import Batcher
from fieldwatch.core.credentials import CredentialListener
from fieldwatch.core.errors import Unauthorized
from fieldwatch.core.events import EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.service import DeviceService
from fieldwatch.firmware.updates.sweeper import FirmwareUpdates
from fieldwatch.monitoring.limits import DeviceLimiter
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.telemetry.ingest.service import TelemetryService
from fieldwatch.transports.sessions import SessionRegistry

if TYPE_CHECKING:
    from fieldwatch.transports.mqtt.dynsec_sync import DynsecSync
    from fieldwatch.transports.mqtt.gateway import MqttGateway
    from fieldwatch.transports.ws_listener import DeviceListener

log = logging.getLogger(__name__)

Ids = tuple[uuid.UUID, uuid.UUID]  # (workspace id, device id)


@dataclass(eq=False)
class DeviceEdge:
    settings: Settings
    uow: Callable[[], UnitOfWork]
    bus: EventBus
    ingest: TelemetryService
    presence: PresenceTracker
    limits: DeviceLimiter
    commands: CommandDispatcher
    firmware: FirmwareUpdates
    codec: TokenCodec
    throttle: LoginThrottle
    #: Told after commit when a device token or a provisioning key is issued (an external
    #: broker that checks logins itself adds itself here).
    credential_listeners: list[CredentialListener]
    #: Tells them (``Runtime.credential_issued``).
    credential_issued: Callable[[str, uuid.UUID, uuid.UUID, str], Awaitable[None]]
    #: The device WebSocket sessions of this process (main port and device listener).
    sessions: SessionRegistry = field(init=False)
    #: Device token checks of WebSocket handshakes, batched (a burst of reconnects costs
    #: a few queries).
    authenticator: Batcher[str, Ids | None] = field(init=False)
    mqtt: MqttGateway | None = None  # when MQTT runs (``start_gateway``)
    #: MQTT is to run in this process (``start_gateway`` was asked to start it).
    mqtt_expected: bool = False
    listener: DeviceListener | None = None  # when the device port is on (``start_listener``)
    #: Passes credentials issued here on to an external broker, in a process without
    #: MQTT (``start_credential_sync``).
    credential_sync: DynsecSync | None = None

    def __post_init__(self) -> None:
        self.sessions = SessionRegistry(self.uow, self.bus)
        self.authenticator = Batcher(self._check_tokens, name="device-auth")

    def auth_service(self, uow: UnitOfWork) -> AuthService:
        return AuthService(
            uow.session, codec=self.codec, settings=self.settings, throttle=self.throttle
        )

    async def authenticate(self, token: str) -> Ids | None:
        """(workspace id, device id) of a valid device token, else None. Handshakes that
        arrive together are checked together."""
        if not token:
            return None
        return await self.authenticator.submit(token)

    async def _check_tokens(self, tokens: list[str]) -> list[Ids | None]:
        async with self.uow() as uow:
            found = await DeviceService(uow).authenticate_devices(tokens)
            await uow.commit()  # the tokens' last use
        out: list[Ids | None] = []
        for principal in found:
            if isinstance(principal, Unauthorized):
                log.info("device WebSocket refused: %s", principal.detail)
                out.append(None)
            else:
                out.append((principal.workspace_id, principal.device_id))
        return out

    async def stop(self) -> None:
        """Stop the device listener and MQTT where they run; leave the event bus."""
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        if self.mqtt is not None:
            await self.mqtt.stop()
            self.mqtt = None
        if self.credential_sync is not None:
            await self.credential_sync.stop()
            self.credential_sync = None
        self.sessions.close()
