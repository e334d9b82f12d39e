"""The MQTT gateway's inbound side: what devices, provisioning clients and control
services publish, turned into calls of the services (``MqttGateway`` is an
``MqttInbound``; its other half, in ``gateway``, runs the broker connection).

Messages arrive in batches. The readings of a batch (sensor data, heartbeats, status
messages) go to ingestion's one entry point together, one batch per workspace, with
every device heard from; QoS 1 messages are acknowledged to the broker only after their
data is committed. A data message may carry many readings (``data``): a batch whose
readings reach ``FIELDWATCH_INGEST_MAX_BATCH`` is stored and acknowledged in parts. Any
message from a device marks it seen and opens its command channel, so commands and
configuration waiting for it are published to its topics; its last will
(``{"status": "offline"}`` on its status topic) marks it offline at once. A device's
messages over its rate limit are dropped before they are decoded; a data message that
cannot be read or holds too many readings is refused whole, and readings refused one by
one are reported to the device (``guard``). Firmware update reports and requests,
and the versions devices say they run, go to the update service (``firmware``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fieldwatch.auth.principal import acting_for
from fieldwatch.commands.config import ConfigService
from fieldwatch.commands.messages import parse_report
from fieldwatch.commands.schemas import CommandCreate
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import AppError
from fieldwatch.db.faults import RETRY_AFTER_S, outages
from fieldwatch.devices.provisioning import ProvisioningService
from fieldwatch.firmware.updates.messages import version_in
from fieldwatch.monitoring.limits import Refusal
from fieldwatch.monitoring.presence import OFFLINE
from fieldwatch.telemetry.ingest.batch import Batch
from fieldwatch.telemetry.ingest.parse import NotAnObject, decode_message, device_message
from fieldwatch.telemetry.ingest.service import Incoming
from fieldwatch.telemetry.ingest.writer import Overloaded
from fieldwatch.transports.edge import DeviceEdge
from fieldwatch.transports.mqtt import firmware, topics
from fieldwatch.transports.mqtt.authority import DeviceWorkspaces, FieldwatchAuthority
from fieldwatch.transports.mqtt.channel import MqttChannel
from fieldwatch.transports.mqtt.data import Positions, TooManyReadings, add_message
from fieldwatch.transports.mqtt.guard import DeviceGuard
from fieldwatch.transports.mqtt.link import IncomingMessage, MqttLink
from fieldwatch.transports.mqtt.refusals import RefusedPublishes
from fieldwatch.transports.mqtt.registration import Registration
from fieldwatch.transports.mqtt.senders import DEVICE_KINDS, KnownSenders, Sender
from fieldwatch.transports.mqtt.topics import Kind
from fieldwatch.transports.mqtt.turns import Part, Turns

if TYPE_CHECKING:
    from fieldwatch.transports.mqtt.dynsec_sync import DynsecSync

log = logging.getLogger(__name__)

CONTROL_KINDS = frozenset({Kind.CONTROL_COMMAND, Kind.CONTROL_CONFIG, Kind.CONTROL_FIRMWARE})
#: What a batch may hold and still be prepared while the batch before it is stored
#: (anything else acts on the spot: ``turns``)
OVERLAPPING = frozenset({Kind.DATA, Kind.HEARTBEAT})


@dataclass
class _Inbox:
    """What one batch of messages amounts to, per workspace: the readings (each message,
    or each element of an array, an item of its device, see ``Batch.owners`` and
    ``Positions``), and the devices heard from, with the reason presence records."""

    now: datetime  # readings without a timestamp: received now
    stamp: str = field(init=False)  # the same, as a reading's timestamp
    data: dict[uuid.UUID, Batch] = field(default_factory=lambda: defaultdict(Batch))
    heard: dict[uuid.UUID, dict[uuid.UUID, str]] = field(default_factory=lambda: defaultdict(dict))
    versions: dict[uuid.UUID, str] = field(default_factory=dict)  # device -> version it runs
    positions: dict[uuid.UUID, Positions] = field(default_factory=lambda: defaultdict(Positions))
    readings: int = 0  # in the data messages taken
    #: device id (as text, whose hash is kept) → its workspace's batch and positions
    shares: dict[str, tuple[Batch, Positions]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stamp = self.now.isoformat()

    def workspaces(self) -> list[uuid.UUID]:
        return list(dict.fromkeys([*self.data, *self.heard]))


class MqttInbound(Registration):
    """Handles the batches the broker connection delivers (``handle``)."""

    edge: DeviceEdge
    link: MqttLink | None
    authority: FieldwatchAuthority | None
    dynsec: DynsecSync | None
    guard: DeviceGuard
    refusals: RefusedPublishes
    workspaces: DeviceWorkspaces
    channels: dict[uuid.UUID, MqttChannel]
    known_senders: KnownSenders
    turns: Turns

    async def handle(self, messages: list[IncomingMessage]) -> None:
        """One batch from the broker, acknowledged once it is stored, in parts of about
        ``ingest_max_batch`` readings; the next part is prepared while one is stored
        (``turns``). While the database is unavailable or the write path saturated, a
        part is retried (with backoff) and stays unacknowledged: the broker holds back
        what follows, and nothing is lost if this process dies."""
        parsed = [topics.parse(message.topic) for message in messages]
        loop = asyncio.get_running_loop()
        parts: list[asyncio.Task[None]] = []
        done = 0
        try:
            async with self.turns.batches:  # its parts take their turns before the next's
                while done < len(messages):
                    sized: asyncio.Future[int] = loop.create_future()
                    part = Part(messages[done:], parsed[done:]) if done else Part(messages, parsed)
                    parts.append(asyncio.create_task(self._retrying(part, sized)))
                    done += await sized  # known once the part is prepared
                    if len(parts) > 1:  # two parts in hand at most
                        await parts[-2]
            await asyncio.gather(*parts)
        except BaseException:  # a part failed, or the link stops: none goes on alone
            for task in parts:
                task.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
            raise

    async def _retrying(self, part: Part, sized: asyncio.Future[int]) -> None:
        """Store and acknowledge the first messages of ``part`` (``sized`` tells how
        many, once it is prepared), retried as long as storage fails."""
        delay = 0.2
        try:
            while True:
                try:
                    return await self._handle_once(part, sized)
                except Overloaded as exc:
                    wait = float(exc.retry_after)
                except Exception as exc:
                    held = f"MQTT gateway, {len(part.messages)} messages held"
                    if not outages.record(exc, held):
                        raise
                    wait, delay = delay, min(delay * 2, RETRY_AFTER_S)
                if sized.done():  # a retry takes the same messages again, and no more
                    part = part.first(sized.result())
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            sized.cancel()
            raise
        except BaseException as exc:
            if not sized.done():
                sized.set_exception(exc)
            raise

    async def _handle_once(self, part: Part, sized: asyncio.Future[int]) -> None:
        """Stores and acknowledges the first messages, up to those whose readings reach
        ``ingest_max_batch``. Raises (so nothing is acknowledged) only when storage
        fails; a bad message is logged and dropped, a message over its device's rate
        limit dropped before it is decoded (``guard``). Its turn (``turns``) keeps the
        acknowledgements in the order of the parts."""
        messages, parsed = part.messages, part.parsed
        acting = any(t is not None and t.kind not in OVERLAPPING for t in parsed)
        async with self.turns.prepare(after_previous=acting) as turn:
            limit = None if part.whole else self.edge.settings.ingest_max_batch
            inbox, taken = await self._prepare(messages, parsed, limit)
        if not sized.done():
            sized.set_result(taken)
        try:
            await self._store(inbox)
            await turn.ready()  # acknowledged after the part before it
            self._acknowledge(messages if taken == len(messages) else messages[:taken])
        finally:
            turn.done()

    async def _prepare(
        self, messages: list[IncomingMessage], parsed: list[topics.Topic | None], limit: int | None
    ) -> tuple[_Inbox, int]:
        """The first messages, up to those whose readings reach ``limit`` (None: all of
        them), taken into an inbox; how many were taken."""
        inbox = _Inbox(utcnow())
        taken = len(messages)
        senders = await self.known_senders.of(parsed, self.workspaces, self.guard)
        for i, message in enumerate(messages):
            if i and limit is not None and inbox.readings >= limit:
                taken = i
                break
            topic = parsed[i]
            if topic is None:
                self.refusals.refused("(unknown)", message.topic, "topic")
                continue
            sender = senders.get(topic.device_id) if topic.kind in DEVICE_KINDS else None
            if sender is not None:
                refusal = self.guard.take(sender.device_id, sender.rate)
                if refusal is not None and not await self._over_limit(topic, message, refusal):
                    continue
            if topic.kind is Kind.DATA:
                await self._data(topic, message, inbox, sender)
                continue
            try:
                payload = decode_message(message.payload)
            except NotAnObject:
                log.info("MQTT: a payload on %s is not a JSON object; dropped", message.topic)
                continue
            except ValueError:
                log.info("MQTT: malformed JSON on %s dropped", message.topic)
                continue
            try:
                await self._one(topic, payload, inbox, sender)
            except AppError as exc:
                log.info("MQTT: %s refused: %s", message.topic, exc.detail)
            except ValueError as exc:
                log.info("MQTT: %s refused: %s", message.topic, exc)
        return inbox, taken

    async def _store(self, inbox: _Inbox) -> None:
        for workspace_id in inbox.workspaces():
            batch = inbox.data.get(workspace_id) or Batch()
            heard = inbox.heard.get(workspace_id, {})
            result = await self.edge.ingest.ingest(
                Incoming(workspace_id, batch, "mqtt", heard=heard)
            )
            await self._report(result.rejected, batch.owners, inbox.positions.get(workspace_id))
        for device_id, version in inbox.versions.items():  # after the readings' commit
            await self.edge.firmware.version_reported(device_id, version)

    async def _over_limit(
        self, topic: topics.Topic, message: IncomingMessage, refusal: Refusal
    ) -> bool:
        """A device's message over its rate limit: the device is told (or dropped when it
        floods); True only for its last will, which is never refused (the device must
        be seen going offline)."""
        await self.guard.refused(uuid.UUID(topic.device_id), refusal)
        return topic.kind is Kind.STATUS and _is_last_will(message.payload)

    async def _data(
        self, topic: topics.Topic, message: IncomingMessage, inbox: _Inbox, sender: Sender | None
    ) -> None:
        """A data message's readings to its workspace's batch; one that cannot be read,
        or holds too many readings, is refused whole and the device told why."""
        if sender is None:
            self.refusals.refused(topic.device_id, message.topic, "unknown_device")
            return
        device_id, workspace_id = sender.device_id, sender.workspace_id
        assert topic.sensor_type is not None
        share = inbox.shares.get(topic.device_id)
        first = share is None
        if share is None:  # the device's first data message in the batch
            share = (inbox.data[workspace_id], inbox.positions[workspace_id])
            inbox.shares[topic.device_id] = share
        limit = self.edge.settings.mqtt_max_readings
        try:
            inbox.readings += add_message(
                share[0], share[1], device_id, topic.sensor_type, message.payload, inbox.stamp,
                limit,
            )  # fmt: skip
        except TooManyReadings as exc:
            await self.guard.refuse(device_id, message.topic, "too_many_readings", exc, limit)
        except ValueError as exc:
            await self.guard.refuse(device_id, message.topic, "bad_json", exc)
        if first:
            _heard(inbox, workspace_id, device_id, "mqtt")
            if device_id not in self.channels:
                await self._attach(device_id)

    async def _report(
        self,
        rejected: list[dict[str, Any]],
        owners: Mapping[int, uuid.UUID],
        positions: Positions | None,
    ) -> None:
        """Tell each device its readings that were refused (``owners``: item → device;
        ``positions``: the items that were array elements, and where)."""
        by_device: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        for item in rejected:
            index = item["index"]
            device = owners.get(index)
            if device is None:
                continue
            position = positions.of(index) if positions is not None else None
            by_device[device].append(item if position is None else {**item, "position": position})
        for device, items in by_device.items():
            await self.guard.report(device, items)

    async def _one(
        self, topic: topics.Topic, payload: dict[str, Any], inbox: _Inbox, sender: Sender | None
    ) -> None:
        kind = topic.kind
        if kind is Kind.REGISTER:
            await self._register(topic.device_id, payload)
            return
        if kind in CONTROL_KINDS:
            await self._control(topic, payload)
            return
        if kind not in DEVICE_KINDS:
            return
        if sender is None:
            self.refusals.refused(topic.device_id, str(topic), "unknown_device")
            return
        device_id, workspace_id = sender.device_id, sender.workspace_id
        reason = "mqtt"
        if kind is Kind.STATUS and payload.get("status") == OFFLINE:
            self._detach(device_id)
            await self.edge.presence.gone(workspace_id, device_id, reason="mqtt last will")
            return
        elif kind in (Kind.HEARTBEAT, Kind.STATUS):
            reason = kind.value
            readings = device_message(kind.value, payload, device_id, inbox.now)
            if readings.total:
                inbox.data[workspace_id].add_item(readings, device_id)
            if (version := version_in(payload)) is not None:
                inbox.versions[device_id] = version
        elif kind is Kind.FIRMWARE_STATE:
            assert topic.update_id is not None
            await firmware.state_reported(self.edge.firmware, device_id, topic.update_id, payload)
        elif kind is Kind.UNREGISTER:
            self._detach(device_id)
            async with self.edge.uow() as uow:
                await ProvisioningService(uow).unregister(workspace_id, device_id)
                await uow.commit()
            return
        else:
            await self._ledger(topic, device_id, payload)
        _heard(inbox, workspace_id, device_id, reason)
        await self._attach(device_id)

    async def _ledger(
        self, topic: topics.Topic, device_id: uuid.UUID, payload: dict[str, Any]
    ) -> None:
        # Seed 003: the command id is in the topic, a result without a status completed.
        body = {"status": "completed", **payload, "command_id": topic.command_id}
        report = parse_report(topic.kind.value, body)
        async with self.edge.uow() as uow:
            await self.edge.commands.record(uow, device_id, report)
            await uow.commit()

    async def _control(self, topic: topics.Topic, payload: dict[str, Any]) -> None:
        """A trusted service queues a command or a configuration change (seed 003)."""
        device_id = uuid.UUID(topic.device_id)
        workspace_id = await self._workspace_of(device_id)
        if workspace_id is None:
            return
        async with self.edge.uow() as uow:
            principal = await acting_for(uow.session, workspace_id, "api_key", "mqtt control")
            if topic.kind is Kind.CONTROL_FIRMWARE:
                await firmware.start_requested(
                    self.edge.firmware.service(uow), principal, device_id, payload
                )
            elif topic.kind is Kind.CONTROL_COMMAND:
                body = CommandCreate.model_validate(
                    {"command": payload.get("command"),
                     "params": payload.get("parameters", payload.get("params", {})),
                     **{k: payload[k] for k in ("ttl_s", "idempotency_key") if k in payload}}
                )  # fmt: skip
                await self.edge.commands.service(uow).create(principal, device_id, body)
            else:
                updates = payload.get("config", payload.get("updates"))
                if not isinstance(updates, dict) or not updates:
                    raise ValueError("configuration updates are required")
                service = ConfigService(uow)
                current = (await service.read(principal, device_id)).desired
                await service.put(principal, device_id, {**current, **updates})
            await uow.commit()

    def _acknowledge(self, messages: list[IncomingMessage]) -> None:
        raise NotImplementedError  # the gateway's: to the broker, or the handover's

    # --- channels ---------------------------------------------------------------------

    async def _workspace_of(self, device_id: uuid.UUID) -> uuid.UUID | None:
        return await self.workspaces.get(str(device_id))

    async def _attach(self, device_id: uuid.UUID) -> None:
        if device_id in self.channels or self.link is None:
            return
        channel = MqttChannel(self.link, str(device_id))
        self.channels[device_id] = channel
        await self.edge.commands.attach(device_id, channel)

    def _detach(self, device_id: uuid.UUID) -> None:
        channel = self.channels.pop(device_id, None)
        if channel is not None:
            self.edge.commands.detach(device_id, channel)


def _heard(inbox: _Inbox, workspace_id: uuid.UUID, device_id: uuid.UUID, reason: str) -> None:
    heard = inbox.heard[workspace_id]
    if reason != "mqtt" or device_id not in heard:  # a heartbeat's reason goes first
        heard[device_id] = reason


def _is_last_will(raw: bytes) -> bool:
    try:
        payload = decode_message(raw)
    except ValueError:
        return False
    return payload.get("status") == OFFLINE
