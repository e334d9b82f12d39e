"""The MQTT gateway: Fieldwatch's side of the seed 003 topics.

One code path for both modes. Fieldwatch connects to the broker as a privileged client
(``MqttLink``) and subscribes to every device→server and control topic; in external
mode (``FIELDWATCH_MQTT_URL``) through shared subscriptions, so several gateway
processes split the load. In the default mode ``fieldwatch serve`` also runs the
embedded broker, whose logins and topic rules come from ``authority``.

Messages arrive in batches. Sensor data of a batch goes to storage in one ingest per
workspace; QoS 1 messages are acknowledged to the broker only after their data is
committed. Any message from a device marks it seen and opens its command channel, so
commands and configuration waiting for it are published to its topics; its last will
(``{"status": "offline"}`` on its status topic) marks it offline at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections import defaultdict
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import orjson

from fieldwatch.auth.principal import acting_for
from fieldwatch.commands.schemas import CommandCreate
from fieldwatch.commands.service import CommandService, ConfigService
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import AppError
from fieldwatch.core.events import CREDENTIALS_CHANGED, Event
from fieldwatch.devices.events import DEVICE_STATUS_CHANGED
from fieldwatch.devices.provisioning import ProvisioningService
from fieldwatch.devices.repository import AgentTokenRepository, ProvisioningKeyRepository
from fieldwatch.devices.schemas import ProvisionRequest
from fieldwatch.monitoring.presence import OFFLINE, PRESENCE_CHANGED
from fieldwatch.runtime import Runtime
from fieldwatch.telemetry.parse import Batch, add_reading
from fieldwatch.telemetry.service import TelemetryService
from fieldwatch.transports.frames import DeviceFrame, to_batch
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.authority import (
    PROVISION_USERNAME,
    SERVICE_USERNAME,
    DeviceWorkspaces,
    FieldwatchAuthority,
)
from fieldwatch.transports.mqtt.identity import claim_client_id
from fieldwatch.transports.mqtt.link import IncomingMessage, MqttLink, MqttLinkError
from fieldwatch.transports.mqtt.topics import Kind

if TYPE_CHECKING:
    from fieldwatch.transports.mqtt.dynsec import DynsecManager

log = logging.getLogger(__name__)

DEVICE_KINDS = frozenset(
    {Kind.HEARTBEAT, Kind.DATA, Kind.STATUS, Kind.COMMAND_ACK, Kind.COMMAND_RESULT,
     Kind.CONFIG_APPLIED, Kind.UNREGISTER}
)  # fmt: skip


class MqttChannel:
    """The command ledger's way to one device over MQTT (QoS 1 publishes)."""

    transport = "mqtt"

    def __init__(self, link: MqttLink, device_id: str) -> None:
        self.link = link
        self.device_id = device_id

    async def _publish(self, topic: str, payload: dict[str, Any]) -> bool:
        try:
            await self.link.publish(topic, orjson.dumps(payload), qos=1)
        except MqttLinkError as exc:
            log.info("MQTT: could not publish to device %s: %s", self.device_id, exc)
            return False
        return True

    async def send_command(self, message: dict[str, Any]) -> bool:
        # Seed 003 names the arguments "parameters"; the WebSocket protocol "params".
        payload = {**message, "parameters": message["params"], "timestamp": time.time()}
        return await self._publish(topics.command(self.device_id, message["command_id"]), payload)

    async def send_config(self, message: dict[str, Any]) -> bool:
        payload = {**message, "updates": message["config"], "timestamp": time.time()}
        return await self._publish(topics.config(self.device_id, message["config_id"]), payload)


class MqttGateway:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.authority: FieldwatchAuthority | None = None
        self.broker: Any = None
        self.external = bool(settings.mqtt_url)
        self.link: MqttLink | None = None
        self.dynsec: DynsecManager | None = None
        self.channels: dict[uuid.UUID, MqttChannel] = {}
        self.workspaces = DeviceWorkspaces(runtime)
        self._unsubscribe: list[Any] = []
        self._slot: IO[str] | None = None  # holds the external client id (identity.py)

    # --- life -------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.runtime.settings
        if self.external:
            assert settings.mqtt_url is not None
            url = urlsplit(settings.mqtt_url)
            host, port = url.hostname or "127.0.0.1", url.port or 1883
            username = unquote(url.username) if url.username else None
            password = unquote(url.password) if url.password else None
            tls = url.scheme in ("mqtts", "ssl")
            if settings.mqtt_dynsec:
                username, password = SERVICE_USERNAME, await self._start_dynsec()
        else:
            from fieldwatch.transports.mqtt.embedded import EmbeddedBroker

            self.authority = FieldwatchAuthority(self.runtime, self.workspaces)
            self.broker = EmbeddedBroker(settings.mqtt_host, settings.mqtt_port, self.authority)
            self.authority.broker = self.broker
            await self.broker.start()
            host, port = settings.mqtt_host, self.broker.port
            username, password, tls = SERVICE_USERNAME, self.authority.service_password, False
        window = settings.mqtt_receive_maximum if self.external else 0  # amqtt: MQTT 3.1.1
        batch = settings.mqtt_batch_size
        client_id, keep = f"fieldwatch-{uuid.uuid4().hex[:12]}", False
        if self.external:  # a session the broker keeps (and fills) while Fieldwatch is down
            client_id, self._slot = claim_client_id(settings.mqtt_client_id, settings.data_dir)
            keep = settings.mqtt_session_expiry > 0
        self.link = MqttLink(
            host, port, client_id=client_id, username=username, password=password, tls=tls,
            clean_session=not keep, session_expiry=settings.mqtt_session_expiry,
            handler=self.handle, receive_maximum=window or None, batch_size=batch,
            max_pending=max(10_000, 4 * batch),
        )  # fmt: skip
        for topic_filter in topics.SERVER_FILTERS:
            if self.external:
                topic_filter = topics.shared(topic_filter, settings.mqtt_share_group)
            await self.link.subscribe(topic_filter, qos=1)
        await self.link.start()
        self._unsubscribe.append(self.runtime.bus.subscribe(PRESENCE_CHANGED, self._on_presence))
        where = f"{host}:{port}"
        log.info(
            "MQTT gateway on %s (%s broker)", where, "external" if self.external else "embedded"
        )

    async def _start_dynsec(self) -> str:
        """Manage Mosquitto's dynamic security: roles, Fieldwatch's own client (its
        password derived from the installation's secret, the same in every process), and
        from now on one client per device token issued. Returns that password."""
        from fieldwatch.auth.tokens import load_or_create_secret
        from fieldwatch.transports.mqtt.dynsec import DynsecManager

        settings = self.runtime.settings
        assert settings.mqtt_url is not None
        self.dynsec = DynsecManager.from_url(settings.mqtt_url)
        await self.dynsec.start()
        await self.dynsec.ensure_roles()
        secret = load_or_create_secret(settings).encode()
        password = hmac.new(secret, b"fieldwatch mqtt gateway", hashlib.sha256).hexdigest()
        await self.dynsec.upsert_service_client(SERVICE_USERNAME, password, "service")
        self.runtime.credential_listeners.append(self._credential_issued)
        bus = self.runtime.bus
        self._unsubscribe += [
            bus.subscribe(CREDENTIALS_CHANGED, self._dynsec_credentials),
            bus.subscribe(DEVICE_STATUS_CHANGED, self._dynsec_status),
        ]
        return password

    async def _credential_issued(
        self, kind: str, owner_id: uuid.UUID, credential_id: uuid.UUID, secret: str
    ) -> None:
        """The newest token of a device is its MQTT password (Mosquitto holds one per
        client); the newest provisioning key is the ``provision`` client's."""
        assert self.dynsec is not None
        if kind == "device_token":
            await self.dynsec.upsert_device(str(owner_id), secret, str(credential_id))
        elif kind == "provisioning_key":
            await self.dynsec.set_provisioning_key(secret, str(credential_id))

    async def _dynsec_credentials(self, event: Event) -> None:
        """A token of this device was revoked: if it is the one the broker holds, the
        device is disabled there (which also ends its session). Likewise for the
        provisioning key."""
        if self.dynsec is None:
            return
        if event.subject_id is None:
            if str(event.payload.get("reason", "")).startswith("provisioning_key"):
                await self._check_provisioning_key()
            return
        held = await self.dynsec.device_token_id(str(event.subject_id))
        if held is None:
            return
        async with self.runtime.uow() as uow:
            token = await AgentTokenRepository(uow.session).get(event.subject_id, uuid.UUID(held))
        if token is None or token.revoked_at is not None:
            log.info("MQTT: device %s's token was revoked; disabling it", event.subject_id)
            await self.dynsec.disable_device(str(event.subject_id))

    async def _check_provisioning_key(self) -> None:
        assert self.dynsec is not None
        held = await self.dynsec.provisioning_key_id()
        if held is None:
            return
        async with self.runtime.uow() as uow:
            key = await ProvisioningKeyRepository(uow.session).by_id(uuid.UUID(held))
        if key is None or key.revoked_at is not None:
            log.info("MQTT: the broker's provisioning key was revoked; disabling it there")
            await self.dynsec.disable_device(PROVISION_USERNAME)

    async def _dynsec_status(self, event: Event) -> None:
        if self.dynsec is None or event.subject_id is None:
            return
        if event.payload.get("status") == "retired":
            await self.dynsec.disable_device(str(event.subject_id))

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for device_id, channel in list(self.channels.items()):
            self.runtime.commands.detach(device_id, channel)
        self.channels.clear()
        if self.link is not None:
            await self.link.stop()
        if self._slot is not None:
            self._slot.close()
            self._slot = None
        if self.broker is not None:
            await self.broker.stop()
        if self.authority is not None:
            self.authority.close()
        if self.dynsec is not None:
            if self._credential_issued in self.runtime.credential_listeners:
                self.runtime.credential_listeners.remove(self._credential_issued)
            await self.dynsec.stop()

    # --- inbound ----------------------------------------------------------------------

    async def handle(self, messages: list[IncomingMessage]) -> None:
        """One batch from the broker. Raises (so nothing is acknowledged) only when
        storage fails; a bad message is logged and dropped."""
        data: dict[uuid.UUID, Batch] = defaultdict(Batch)
        seen: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        now = utcnow().isoformat()  # readings without a timestamp: received now
        for message in messages:
            topic = topics.parse(message.topic)
            if topic is None:
                continue
            try:
                payload = orjson.loads(message.payload) if message.payload else {}
            except orjson.JSONDecodeError:
                log.info("MQTT: malformed JSON on %s dropped", message.topic)
                continue
            if not isinstance(payload, dict):
                log.info("MQTT: a payload on %s is not a JSON object; dropped", message.topic)
                continue
            try:
                await self._one(topic, payload, data, seen, now)
            except AppError as exc:
                log.info("MQTT: %s refused: %s", message.topic, exc.detail)
            except ValueError as exc:
                log.info("MQTT: %s refused: %s", message.topic, exc)
        for workspace_id, batch in data.items():
            await self._ingest(workspace_id, batch, "mqtt")
        for workspace_id, devices in seen.items():
            await self.runtime.presence.seen(workspace_id, devices, reason="mqtt")
        assert self.link is not None
        self.link.ack(messages)

    async def _one(
        self,
        topic: topics.Topic,
        payload: dict[str, Any],
        data: dict[uuid.UUID, Batch],
        seen: dict[uuid.UUID, set[uuid.UUID]],
        now: str,
    ) -> None:
        kind = topic.kind
        if kind is Kind.REGISTER:
            await self._register(topic.device_id, payload)
            return
        if kind in (Kind.CONTROL_COMMAND, Kind.CONTROL_CONFIG):
            await self._control(topic, payload)
            return
        if kind not in DEVICE_KINDS:
            return
        device_id = uuid.UUID(topic.device_id)
        workspace_id = await self._workspace_of(device_id)
        if workspace_id is None:
            return
        if kind is Kind.DATA:
            batch = data[workspace_id]
            add_reading(
                batch, batch.total, device_id, topic.sensor_type, payload.get("value"),
                payload.get("timestamp", now), payload.get("unit"), payload.get("quality"),
                name_metric=True,
            )  # fmt: skip
        elif kind is Kind.STATUS and payload.get("status") == OFFLINE:
            self._detach(device_id)
            await self.runtime.presence.gone(workspace_id, device_id, reason="mqtt last will")
            return
        elif kind in (Kind.HEARTBEAT, Kind.STATUS):
            frame = DeviceFrame(kind.value, None, payload)
            batch = to_batch(frame, device_id)
            if batch.total:
                await self._ingest(workspace_id, batch, kind.value)
        elif kind is Kind.UNREGISTER:
            self._detach(device_id)
            async with self.runtime.uow() as uow:
                await ProvisioningService(uow).unregister(workspace_id, device_id)
                await uow.commit()
            return
        else:
            await self._ledger(topic, device_id, payload)
        seen[workspace_id].add(device_id)
        await self._attach(device_id)

    async def _ingest(self, workspace_id: uuid.UUID, batch: Batch, reason: str) -> None:
        runtime = self.runtime
        async with runtime.uow() as uow:
            service = TelemetryService(
                uow, runtime.telemetry, runtime.presence, runtime.bus, runtime.alerts
            )
            refused = await service.refused(workspace_id, list({c[1] for c in batch.candidates}))
            if refused:  # gone, or retired: see the ingestion rules
                batch.candidates = [c for c in batch.candidates if c[1] not in refused]
            if batch.candidates:
                result = await service.ingest(workspace_id, batch, reason=reason)
                if result.rejected:
                    log.debug("MQTT: %d readings rejected", len(result.rejected))

    async def _ledger(
        self, topic: topics.Topic, device_id: uuid.UUID, payload: dict[str, Any]
    ) -> None:
        async with self.runtime.uow() as uow:
            if topic.kind is Kind.CONFIG_APPLIED:
                version = payload.get("version")
                if not isinstance(version, int) or isinstance(version, bool):
                    raise ValueError("config applied needs the integer 'version'")
                await ConfigService(uow).applied(device_id, version)
            else:
                command_id = uuid.UUID(str(topic.command_id))
                service = CommandService(uow)
                if topic.kind is Kind.COMMAND_ACK:
                    await service.acknowledge(device_id, command_id)
                else:
                    status = payload.get("status", "completed")
                    if status not in ("completed", "failed"):
                        raise ValueError("a command result has status completed or failed")
                    await service.finish(device_id, command_id, status, payload.get("result"))
            await uow.commit()

    async def _register(self, serial: str, payload: dict[str, Any]) -> None:
        """Seed 003 register from a provisioning client (embedded broker: the key it
        logged in with)."""
        assert self.link is not None
        key = self.authority.provisioning.get(serial) if self.authority else None
        key_id = await self.dynsec.provisioning_key_id() if self.dynsec else None
        if key is None and key_id is None:
            await self._reply(topics.register_error(serial), "log in as 'provision' first")
            return
        try:
            request = ProvisionRequest.model_validate({**payload, "serial_number": serial})
            settings = self.runtime.settings
            async with self.runtime.uow() as uow:
                service = ProvisioningService(uow)
                if key is not None:
                    answer = await service.register(key, request, settings)
                else:
                    assert key_id is not None
                    answer = await service.register_with_key_id(
                        uuid.UUID(key_id), request, settings
                    )
                await uow.commit()
            await self.runtime.credential_issued(
                "device_token", answer.device_id, answer.token_id, answer.auth_token
            )
        except AppError as exc:
            await self._reply(topics.register_error(serial), exc.detail or exc.title)
            return
        except ValueError as exc:  # pydantic's ValidationError
            await self._reply(topics.register_error(serial), str(exc).splitlines()[0])
            return
        body = answer.model_dump(mode="json")
        await self.link.publish(topics.register_response(serial), orjson.dumps(body), qos=1)

    async def _reply(self, topic: str, message: str) -> None:
        assert self.link is not None
        body = {"status": "error", "message": message, "timestamp": time.time()}
        await self.link.publish(topic, orjson.dumps(body), qos=1)

    async def _control(self, topic: topics.Topic, payload: dict[str, Any]) -> None:
        """A trusted service queues a command or a configuration change (seed 003)."""
        device_id = uuid.UUID(topic.device_id)
        workspace_id = await self._workspace_of(device_id)
        if workspace_id is None:
            return
        async with self.runtime.uow() as uow:
            principal = await acting_for(uow.session, workspace_id, "api_key", "mqtt control")
            if topic.kind is Kind.CONTROL_COMMAND:
                body = CommandCreate.model_validate(
                    {"command": payload.get("command"),
                     "params": payload.get("parameters", payload.get("params", {})),
                     **{k: payload[k] for k in ("ttl_s", "idempotency_key") if k in payload}}
                )  # fmt: skip
                await CommandService(uow).create(principal, device_id, body)
            else:
                updates = payload.get("config", payload.get("updates"))
                if not isinstance(updates, dict) or not updates:
                    raise ValueError("configuration updates are required")
                service = ConfigService(uow)
                current = (await service.read(principal, device_id)).desired
                await service.put(principal, device_id, {**current, **updates})
            await uow.commit()

    # --- channels ---------------------------------------------------------------------

    async def _workspace_of(self, device_id: uuid.UUID) -> uuid.UUID | None:
        return await self.workspaces.get(str(device_id))

    async def _attach(self, device_id: uuid.UUID) -> None:
        if device_id in self.channels or self.link is None:
            return
        channel = MqttChannel(self.link, str(device_id))
        self.channels[device_id] = channel
        await self.runtime.commands.attach(device_id, channel)

    def _detach(self, device_id: uuid.UUID) -> None:
        channel = self.channels.pop(device_id, None)
        if channel is not None:
            self.runtime.commands.detach(device_id, channel)

    async def _on_presence(self, event: Event) -> None:
        if event.payload.get("connectivity") == OFFLINE and event.subject_id is not None:
            self._detach(event.subject_id)


async def start_gateway(runtime: Runtime) -> MqttGateway | None:
    """Start MQTT as the settings say; None when it is off or could not start (logged:
    the rest of the platform runs on without it)."""
    settings = runtime.settings
    if not settings.mqtt_url and not settings.mqtt_embedded:
        return None
    gateway = MqttGateway(runtime)
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
    runtime.extras["mqtt"] = gateway
    return gateway
