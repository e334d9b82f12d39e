"""Registration over MQTT (seed 003): a provisioning client publishes on
``iot/devices/register/{request_id}`` and gets its device and token on that id's
response topic, or the reason on its error topic. Part of the gateway's inbound side
(``inbound.MqttInbound`` is a ``Registration``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from fieldwatch.core.errors import AppError
from fieldwatch.devices.provisioning import ProvisioningService
from fieldwatch.devices.schemas import ProvisionRequest
from fieldwatch.firmware.updates.messages import version_in
from fieldwatch.transports.edge import DeviceEdge
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.authority import FieldwatchAuthority
from fieldwatch.transports.mqtt.link import MqttLink

#: Through an external broker a register must name its serial in the payload and come
#: under a random one-time request id of at least this many characters: the broker lets
#: any provisioning client subscribe to a named id's replies.
MIN_REQUEST_ID = 32


class Registration:
    edge: DeviceEdge
    link: MqttLink | None
    authority: FieldwatchAuthority | None

    async def _register(self, request_id: str, payload: dict[str, Any]) -> None:
        """Seed 003 register from a provisioning client, on
        ``iot/devices/register/{request_id}``; the answer goes to that id's register
        topics. The serial is the payload's ``serial_number``, else the request id. The
        key is the payload's ``provisioning_key``, else (embedded broker) the one the
        client logged in with."""
        assert self.link is not None
        error = topics.register_error(request_id)
        key = payload.get("provisioning_key")
        if not isinstance(key, str) or not key:
            key = self.authority.provisioning.get(request_id) if self.authority else None
        if key is None:
            await self._reply(error, "send your provisioning key as 'provisioning_key'")
            return
        serial = payload.get("serial_number")
        if self.authority is None and not _private_request(request_id, serial):
            await self._reply(error, (
                "with this broker, publish to iot/devices/register/{request id} with a "
                f"random one-time request id of at least {MIN_REQUEST_ID} characters and "
                "your serial number as 'serial_number'"
            ))  # fmt: skip
            return
        try:
            serial = serial if isinstance(serial, str) else request_id
            body = {**payload, "serial_number": serial, "mqtt": True}  # it speaks MQTT
            request = ProvisionRequest.model_validate(body)
            async with self.edge.uow() as uow:
                answer = await ProvisioningService(uow).register(key, request, self.edge.settings)
                await uow.commit()
            await self.edge.credential_issued(
                "device_token", answer.device_id, answer.token_id, answer.auth_token
            )
        except AppError as exc:
            await self._reply(error, exc.detail or exc.title)
            return
        except ValueError as exc:  # pydantic's ValidationError
            await self._reply(error, str(exc).splitlines()[0])
            return
        body = answer.model_dump(mode="json")
        await self.link.publish(topics.register_response(request_id), orjson.dumps(body), qos=1)
        if (version := version_in(payload)) is not None:
            await self.edge.firmware.version_reported(uuid.UUID(str(answer.device_id)), version)

    async def _reply(self, topic: str, message: str) -> None:
        assert self.link is not None
        body = {"status": "error", "message": message, "timestamp": time.time()}
        await self.link.publish(topic, orjson.dumps(body), qos=1)


def _private_request(request_id: str, serial: object) -> bool:
    """Whether a register through an external broker came under a one-time request id
    that no other provisioning client can know (so none can subscribe to its answer)."""
    return isinstance(serial, str) and serial != request_id and len(request_id) >= MIN_REQUEST_ID
