"""The MQTT gateway: Fieldwatch's side of the seed 003 topics.

One code path for both modes. Fieldwatch connects to the broker as a privileged client
(``MqttLink``) and subscribes to every device→server and control topic; in external
mode (``FIELDWATCH_MQTT_URL``) through shared subscriptions, so several gateway
processes split the load. In the default mode ``fieldwatch serve`` also runs the
embedded broker, whose logins and topic rules come from ``authority``.

What arrives is handled by the inbound side (``inbound.MqttInbound``, which this
gateway is): data to storage after rate limits, presence, commands, provisioning.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from fieldwatch.auth.tokens import load_or_create_secret
from fieldwatch.core.events import Event
from fieldwatch.monitoring.presence import OFFLINE, PRESENCE_CHANGED
from fieldwatch.transports.edge import DeviceEdge
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.authority import (
    SERVICE_USERNAME,
    DeviceWorkspaces,
    FieldwatchAuthority,
)
from fieldwatch.transports.mqtt.channel import MqttChannel
from fieldwatch.transports.mqtt.guard import DeviceGuard
from fieldwatch.transports.mqtt.identity import claim_client_id
from fieldwatch.transports.mqtt.inbound import MqttInbound
from fieldwatch.transports.mqtt.link import IncomingMessage, MqttLink, MqttLinkOptions
from fieldwatch.transports.mqtt.refusals import RefusedPublishes
from fieldwatch.transports.mqtt.senders import KnownSenders
from fieldwatch.transports.mqtt.turns import Turns

if TYPE_CHECKING:
    from fieldwatch.transports.mqtt.dynsec_sync import DynsecSync

log = logging.getLogger(__name__)


class MqttGateway(MqttInbound):
    def __init__(self, edge: DeviceEdge) -> None:
        self.edge = edge
        settings = edge.settings
        self.authority: FieldwatchAuthority | None = None
        self.broker: Any = None
        self.external = bool(settings.mqtt_url)
        self.link: MqttLink | None = None
        self.dynsec: DynsecSync | None = None
        self.channels: dict[uuid.UUID, MqttChannel] = {}
        self.known_senders = KnownSenders()
        self.turns = Turns()
        self.workspaces = DeviceWorkspaces(edge)
        self.guard = DeviceGuard(edge.limits, lambda: self.link, self._disconnect)
        self.refusals = RefusedPublishes()
        self._unsubscribe: list[Any] = []
        self._slot: IO[str] | None = None  # holds the external client id (identity.py)

    # --- life -------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.edge.settings
        if self.external:
            assert settings.mqtt_url is not None
            url = urlsplit(settings.mqtt_url)
            host, port = url.hostname or "127.0.0.1", url.port or 1883
            username = unquote(url.username) if url.username else None
            password = unquote(url.password) if url.password else None
            tls = url.scheme in ("mqtts", "ssl")
            if settings.mqtt_dynsec:
                from fieldwatch.transports.mqtt.dynsec import DynsecManager
                from fieldwatch.transports.mqtt.dynsec_sync import DynsecSync

                self.dynsec = DynsecSync(self.edge, DynsecManager.from_url(settings.mqtt_url))
                username, password = SERVICE_USERNAME, await self.dynsec.start(SERVICE_USERNAME)
        else:
            from fieldwatch.transports.mqtt.embedded import EmbeddedBroker

            self.authority = FieldwatchAuthority(self.edge, self.workspaces)
            self.broker = EmbeddedBroker(
                settings.mqtt_host, settings.mqtt_port, self.authority, refusals=self.refusals
            )
            self.authority.broker = self.broker
            await self.broker.start()
            host, port = settings.mqtt_host, self.broker.port
            username, password, tls = SERVICE_USERNAME, self.authority.service_password, False
        window = settings.mqtt_receive_maximum if self.external else 0  # amqtt: MQTT 3.1.1
        batch = settings.mqtt_batch_size
        client_id, keep = gateway_client_id(), False
        if self.external:  # a session the broker keeps (and fills) while Fieldwatch is down
            client_id, self._slot = claim_client_id(
                settings.mqtt_client_id, settings.data_dir, load_or_create_secret(settings)
            )
            keep = settings.mqtt_session_expiry > 0
        options = MqttLinkOptions(
            host, port, client_id=client_id, username=username, password=password, tls=tls,
            clean_session=not keep, session_expiry=settings.mqtt_session_expiry,
            receive_maximum=window or None, batch_size=batch, max_pending=max(10_000, 4 * batch),
            # An external broker: the next batch is decoded while one is stored (turns.py).
            # The embedded one shares this process's core: smaller batches cost it more.
            handler_depth=2 if self.external else 1,
            client=settings.resolved_mqtt_client,
        )  # fmt: skip
        self.link = MqttLink(options, handler=self.handle)
        for topic_filter in topics.SERVER_FILTERS:
            if self.external:
                topic_filter = topics.shared(topic_filter, settings.mqtt_share_group)
            await self.link.subscribe(topic_filter, qos=1)
        await self.link.start()
        if self.broker is not None:  # devices' data straight to the link, in-process
            self.broker.hand_over(self.link)
        self._unsubscribe.append(self.edge.bus.subscribe(PRESENCE_CHANGED, self._on_presence))
        where = f"{host}:{port}"
        log.info(
            "MQTT gateway on %s (%s broker)", where, "external" if self.external else "embedded"
        )

    def serving(self) -> bool:
        """Whether it can take devices' messages: connected to the broker, and (the
        embedded one) the broker listening."""
        link_up = self.link is not None and self.link.connected
        return link_up and (self.broker is None or self.broker.running)

    def device_sessions(self) -> int:
        """Devices connected to the embedded broker; through an external broker, those
        heard from (with a command channel) since they last went offline."""
        return self.broker.devices() if self.broker is not None else len(self.channels)

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for device_id, channel in list(self.channels.items()):
            self.edge.commands.detach(device_id, channel)
        self.channels.clear()
        await self.guard.stop()
        if self.link is not None:
            await self.link.stop()
        if self.broker is not None:
            self.broker.hand_over(None)
        if self._slot is not None:
            self._slot.close()
            self._slot = None
        if self.broker is not None:
            await self.broker.stop()
        if self.authority is not None:
            self.authority.close()
        if self.dynsec is not None:
            await self.dynsec.stop()

    def _acknowledge(self, messages: list[IncomingMessage]) -> None:
        """Committed: acknowledged to the broker, or (handed over in-process by the
        embedded broker) to their devices."""
        handover = self.broker.handover if self.broker is not None else None
        if handover is not None:
            handover.ack(messages)
        assert self.link is not None
        self.link.ack(messages)

    async def _disconnect(self, device_id: str) -> None:
        """End a device's connection (it may reconnect): the embedded broker closes its
        session, Mosquitto kicks it (dynamic security)."""
        if self.broker is not None:
            await self.broker.disconnect(device_id)
        elif self.dynsec is not None:
            await self.dynsec.manager.kick(device_id)
        else:
            log.warning("MQTT: cannot disconnect device %s from this broker", device_id)

    async def _on_presence(self, event: Event) -> None:
        if event.payload.get("connectivity") == OFFLINE and event.subject_id is not None:
            self._detach(event.subject_id)


def gateway_client_id() -> str:
    """A client id no one can guess (128 random bits), for the embedded broker's gateway
    client (the external broker's come from ``identity``: unguessable too, and stable)."""
    return f"fieldwatch-{secrets.token_hex(16)}"


async def start_gateway(edge: DeviceEdge) -> MqttGateway | None:
    """Start MQTT as the settings say (the edge's ``mqtt``, stopped with it); None when
    it is off or could not start (logged: the rest of the platform runs on without it)."""
    settings = edge.settings
    if not settings.mqtt_url and not settings.mqtt_embedded:
        return None
    edge.mqtt_expected = True  # down from now on until it serves (readiness)
    gateway = MqttGateway(edge)
    try:
        await gateway.start()
    except OSError as exc:
        log.error(
            "MQTT is off: the embedded broker could not listen on %s:%s (%s). Another MQTT "
            "broker may use that port: set FIELDWATCH_MQTT_PORT, or FIELDWATCH_MQTT_URL to "
            "use that broker, or FIELDWATCH_MQTT_EMBEDDED=false.",
            settings.mqtt_host, settings.mqtt_port, exc.strerror or exc,
        )  # fmt: skip
        await gateway.stop()
        return None
    edge.mqtt = gateway
    return gateway


async def start_credential_sync(edge: DeviceEdge) -> DynsecSync | None:
    """In a process without MQTT that issues credentials (an api process), with an
    external broker whose logins Fieldwatch manages (``FIELDWATCH_MQTT_DYNSEC``): pass the
    device tokens and provisioning keys issued here on to the broker (the edge's
    ``credential_sync``, stopped with it). None when there is no such broker or it could
    not be reached (logged: the API serves on; tokens issued meanwhile reach the broker
    only when issued again)."""
    settings = edge.settings
    if not settings.mqtt_url or not settings.mqtt_dynsec:
        return None
    from fieldwatch.transports.mqtt.dynsec import DynsecError, DynsecManager
    from fieldwatch.transports.mqtt.dynsec_sync import DynsecSync

    sync = DynsecSync(edge, DynsecManager.from_url(settings.mqtt_url))
    try:
        await sync.start_issuing()
    except (DynsecError, OSError) as exc:
        log.error("MQTT broker unreachable: device credentials issued here do not reach it "
                  "(%s)", exc)  # fmt: skip
        await sync.stop()
        return None
    edge.credential_sync = sync
    return sync
