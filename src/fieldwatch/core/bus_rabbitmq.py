"""The RabbitMQ event bus: the same ``EventBus`` interface as the in-process bus, over a
durable topic exchange, so several processes can publish and consume domain events.

Routing keys are ``{workspace_id}.{subject_id or '-'}.{event.type}``, so other consumers
can bind e.g. ``*.*.device.status_changed`` or ``<workspace_id>.#``.

Each bus instance (one per process) owns one exclusive, auto-delete queue. ``subscribe``
binds it with a topic key derived from the fnmatch pattern; that key selects a superset
of the matching events, and the exact pattern is applied again locally with
``fnmatch.fnmatchcase``, so a pattern matches exactly what it matches on
``InProcessEventBus``. Every process that subscribes to an event receives it (fan-out);
events published while a process is disconnected are not kept for it.

A subscription with a ``group`` goes to the group's own queue instead (``groups``): one
durable quorum queue per group that every process of the group consumes, so each event
is handled by one of them, and events published while none runs wait for the next
(the worker role's webhook queueing and offline alerts: a restarted worker loses
nothing).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
    DeliveryMode,
    ExchangeType,
)
from yarl import URL

from fieldwatch.core.bus_groups import GroupQueues
from fieldwatch.core.events import Event, Handler

log = logging.getLogger(__name__)

DEFAULT_EXCHANGE = "fieldwatch.events"
#: At close, how long binding changes still under way may take before they are cut off.
SYNC_WAIT_S = 2.0
_MAGIC = frozenset("*?[")


class EventBusError(RuntimeError):
    """Base class of the RabbitMQ bus errors."""


class EventBusUnavailable(EventBusError):
    """The bus is not started, or the connection to the broker is down."""


class EventPublishError(EventBusError):
    """The broker did not accept the event (nack, no confirm in time, bad payload)."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe to log."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<unparseable url>"
    if parsed.password is not None:
        parsed = parsed.with_password("***")
    return str(parsed)


def routing_key(event: Event) -> str:
    subject = str(event.subject_id) if event.subject_id else "-"
    return f"{event.workspace_id}.{subject}.{event.type}"


def binding_key(pattern: str) -> str:
    """Translate an fnmatch pattern over event types into a topic binding key over
    routing keys. The key matches every event the pattern matches (and possibly more;
    the pattern is re-checked locally): the literal words before the first wildcard are
    kept, the rest becomes ``#`` because fnmatch's ``*`` also matches dots.

    ``device.created`` → ``*.*.device.created``; ``device.*`` → ``*.*.device.#``;
    ``*`` → ``#``.
    """
    words: list[str] = []
    for word in pattern.split("."):
        if any(char in _MAGIC for char in word):
            words.append("#")
            break
        words.append(word)
    if words == ["#"]:
        return "#"
    return "*.*." + ".".join(words)


def event_from_dict(data: dict[str, Any]) -> Event:
    """The inverse of ``Event.to_dict``."""
    subject = data.get("subject_id")
    payload = data["payload"]
    if not isinstance(payload, dict):
        raise TypeError("event payload is not an object")
    return Event(
        type=str(data["type"]),
        workspace_id=uuid.UUID(data["workspace_id"]),
        payload=payload,
        subject_id=uuid.UUID(subject) if subject else None,
        id=uuid.UUID(data["id"]),
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
    )


async def _call(handler: Handler, event: Event) -> None:
    await handler(event)


class RabbitMQEventBus:
    """``EventBus`` over RabbitMQ. Call ``await start()`` before publishing and
    ``await close()`` at shutdown; subscriptions made before ``start()`` are applied
    on start, later ones in the background (``await wait_ready()`` to wait for them).

    A failing handler is logged and does not affect other handlers or later events;
    a message is acknowledged after its handlers ran.
    """

    def __init__(
        self,
        url: str,
        exchange: str = DEFAULT_EXCHANGE,
        *,
        prefetch: int = 32,
        connect_timeout_s: float = 10.0,
        publish_timeout_s: float = 10.0,
        close_timeout_s: float = 10.0,
    ) -> None:
        self._url = url
        self._exchange_name = exchange
        self._prefetch = prefetch
        self._connect_timeout_s = connect_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._close_timeout_s = close_timeout_s
        self._queue_name = f"fieldwatch.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._subs: list[tuple[str, Handler]] = []
        self._groups = GroupQueues(exchange)
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: ConsumerTag | None = None
        self._bound: set[str] = set()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[Any]] = set()
        #: "publish" → events the broker did not take; "handler" → handlers that raised.
        self.failures: Counter[str] = Counter()

    @property
    def url(self) -> str:
        """The broker URL with the password masked."""
        return mask_url(self._url)

    @property
    def exchange_name(self) -> str:
        return self._exchange_name

    @property
    def started(self) -> bool:
        return self._connection is not None

    @property
    def connected(self) -> bool:
        """Started, and the connection to the broker is up (not reconnecting)."""
        connection = self._connection
        return connection is not None and connection.connected.is_set()

    async def start(self) -> None:
        """Connect, declare the exchange and apply the subscriptions made so far."""
        if self._connection is not None:
            return
        try:
            connection = await aio_pika.connect_robust(self._url, timeout=self._connect_timeout_s)
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            raise EventBusUnavailable(f"cannot connect to RabbitMQ at {self.url}: {exc}") from exc
        try:
            channel = await connection.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                self._exchange_name, ExchangeType.TOPIC, durable=True
            )
            self._connection = connection
            await self._sync_bindings()
        except BaseException:
            self._connection = self._exchange = self._queue = None
            self._bound.clear()
            await connection.close()
            raise
        log.info(
            "event bus connected to %s, exchange %s",
            self.url,
            self._exchange_name,
            extra={"broker": self.url, "exchange": self._exchange_name},
        )

    async def close(self) -> None:
        """Stop consuming, let running handlers finish (bounded), then disconnect."""
        connection = self._connection
        if connection is None:
            return
        tasks = list(self._tasks)
        if tasks:  # bindings of unsubscribes just made: cut off mid-call, the channel closes
            await asyncio.wait(tasks, timeout=SYNC_WAIT_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        queue, tag = self._queue, self._consumer_tag
        consumers = [(queue, tag), *self._groups.consumers()]
        for queue, tag in consumers:
            if queue is None or tag is None or not connection.connected.is_set():
                continue
            try:
                await queue.cancel(tag)
            except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError):
                log.warning("could not cancel the event consumer", exc_info=True)
        self._groups.forget()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=self._close_timeout_s)
        self._connection = self._exchange = self._queue = None
        self._consumer_tag = None
        self._bound.clear()
        await connection.close()
        log.info("event bus disconnected from %s", self.url)

    def subscribe(
        self, pattern: str, handler: Handler, *, group: str | None = None
    ) -> Callable[[], None]:
        subs = self._subs if group is None else self._groups.subs.setdefault(group, [])
        entry = (pattern, handler)
        subs.append(entry)
        self._schedule_sync()

        def unsubscribe() -> None:
            if entry in subs:
                subs.remove(entry)
                self._schedule_sync()

        return unsubscribe

    async def wait_ready(self) -> None:
        """Wait until the broker's bindings match the current subscriptions."""
        if self._connection is None:
            raise EventBusUnavailable("the RabbitMQ event bus is not started")
        await self._sync_bindings()

    async def publish(self, event: Event) -> None:
        """Publish and wait for the broker's confirm.

        Raises ``EventBusUnavailable`` when not started or disconnected and
        ``EventPublishError`` when the broker nacks or does not confirm in time.
        """
        try:
            await self._publish(event)
        except EventBusError:
            self.failures["publish"] += 1
            raise

    async def _publish(self, event: Event) -> None:
        connection, exchange = self._connection, self._exchange
        what = f"event {event.id} ({event.type})"
        if connection is None or exchange is None:
            raise EventBusUnavailable(f"{what} not published: the RabbitMQ bus is not started")
        if not connection.connected.is_set():
            raise EventBusUnavailable(f"{what} not published: RabbitMQ at {self.url} is down")
        try:
            body = json.dumps(event.to_dict(), separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise EventPublishError(f"{what} not published: payload is not JSON: {exc}") from exc
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=str(event.id),
            timestamp=event.occurred_at,
            type=event.type,
            app_id="fieldwatch",
        )
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                await exchange.publish(message, routing_key=routing_key(event), mandatory=False)
        except aiormq.exceptions.DeliveryError as exc:
            raise EventPublishError(f"{what} not published: the broker refused it: {exc}") from exc
        except TimeoutError as exc:
            raise EventPublishError(
                f"{what} not confirmed by RabbitMQ within {self._publish_timeout_s}s"
            ) from exc
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError) as exc:
            raise EventBusUnavailable(f"{what} not published: {exc!r}") from exc

    # -- consuming ---------------------------------------------------------------------

    def _schedule_sync(self) -> None:
        if self._connection is None:
            return  # applied by start()
        task = asyncio.get_running_loop().create_task(self._sync_in_background())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_in_background(self) -> None:
        try:
            await self._sync_bindings()
        except Exception:
            log.exception("could not update the event bus bindings")

    async def _sync_bindings(self) -> None:
        """Declare the queue on first need, then bind/unbind to match ``self._subs``."""
        async with self._lock:
            connection = self._connection
            if connection is None:
                return
            wanted = {binding_key(pattern) for pattern, _ in self._subs}
            if self._queue is None and not wanted:
                await self._groups.sync(connection, self._prefetch, self._on_message)
                return
            if self._queue is None:
                channel = await connection.channel(publisher_confirms=False)
                await channel.set_qos(prefetch_count=self._prefetch)
                # Declared here too so a restored connection rebinds to an existing exchange.
                await channel.declare_exchange(
                    self._exchange_name, ExchangeType.TOPIC, durable=True
                )
                queue = await channel.declare_queue(
                    self._queue_name, exclusive=True, auto_delete=True
                )
                self._consumer_tag = await queue.consume(self._on_message)
                self._queue = queue
            for key in sorted(wanted - self._bound):
                await self._queue.bind(self._exchange_name, routing_key=key)
                self._bound.add(key)
            for key in sorted(self._bound - wanted):
                await self._queue.unbind(self._exchange_name, routing_key=key)
                self._bound.discard(key)
            await self._groups.sync(connection, self._prefetch, self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._handle(message)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = event_from_dict(json.loads(message.body))
        except (ValueError, KeyError, TypeError):
            log.error(
                "undecodable event message dropped",
                exc_info=True,
                extra={"message_id": message.message_id, "routing_key": message.routing_key},
            )
            await self._settle(message, ack=False)
            return
        group_subs = self._groups.subs_for(message)
        subs = self._subs if group_subs is None else group_subs
        handlers = [h for p, h in list(subs) if fnmatch.fnmatchcase(event.type, p)]
        if handlers:
            results = await asyncio.gather(
                *(_call(h, event) for h in handlers), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    self.failures["handler"] += 1
                    log.error(
                        "event handler failed",
                        exc_info=result,
                        extra={"event_type": event.type, "event_id": str(event.id)},
                    )
        await self._settle(message, ack=True)

    @staticmethod
    async def _settle(message: AbstractIncomingMessage, *, ack: bool) -> None:
        try:
            if ack:
                await message.ack()
            else:
                await message.reject(requeue=False)
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError):
            log.warning("could not settle event message %s", message.message_id, exc_info=True)
