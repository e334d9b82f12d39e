"""The RabbitMQ bus's group queues: subscriptions that one process of a group handles.

Each group has one durable quorum queue, ``<exchange>.<group>``, bound with the topic
keys of the group's patterns and consumed by every process of the group (competing
consumers): an event goes to one of them, and is acknowledged after its handlers ran, so
a process that dies mid-event leaves it to another. Bindings are only ever added: they
must outlive the processes, so that events published while no process of the group runs
wait in the queue for the next one. What waits is bounded: a message older than a day
is dropped (``x-message-ttl``), and a queue nobody consumed for a week goes
(``x-expires``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
    ExchangeType,
)

from fieldwatch.core.events import Handler

DAY_MS = 24 * 3600 * 1000
QUEUE_ARGUMENTS = {
    "x-queue-type": "quorum",
    "x-message-ttl": DAY_MS,
    "x-expires": 7 * DAY_MS,
}

Subs = list[tuple[str, Handler]]
OnMessage = Callable[[AbstractIncomingMessage], Awaitable[None]]


def queue_name(exchange: str, group: str) -> str:
    return f"{exchange}.{group}"


class GroupQueues:
    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        #: The subscriptions of each group, as ``RabbitMQEventBus.subscribe`` made them.
        self.subs: dict[str, Subs] = {}
        self._queues: dict[str, AbstractQueue] = {}
        self._tags: dict[ConsumerTag, str] = {}
        self._bound: dict[str, set[str]] = {}

    def subs_for(self, message: AbstractIncomingMessage) -> Subs | None:
        """The subscriptions of the group whose queue ``message`` came from; None when
        it came from the process's own queue."""
        group = self._tags.get(message.consumer_tag) if message.consumer_tag else None
        return None if group is None else self.subs.get(group, [])

    async def sync(
        self, connection: AbstractRobustConnection, prefetch: int, on_message: OnMessage
    ) -> None:
        """Declare and consume each group's queue on first need; bind new patterns."""
        from fieldwatch.core.bus_rabbitmq import binding_key

        for group, subs in self.subs.items():
            wanted = {binding_key(pattern) for pattern, _ in subs}
            queue = self._queues.get(group)
            if queue is None:
                if not wanted:
                    continue
                channel = await connection.channel(publisher_confirms=False)
                await channel.set_qos(prefetch_count=prefetch)
                await channel.declare_exchange(self.exchange, ExchangeType.TOPIC, durable=True)
                queue = await channel.declare_queue(
                    queue_name(self.exchange, group), durable=True, arguments=QUEUE_ARGUMENTS
                )
                self._tags[await queue.consume(on_message)] = group
                self._queues[group] = queue
            bound = self._bound.setdefault(group, set())
            for key in sorted(wanted - bound):
                await queue.bind(self.exchange, routing_key=key)
                bound.add(key)

    def consumers(self) -> list[tuple[AbstractQueue, ConsumerTag]]:
        return [(self._queues[group], tag) for tag, group in self._tags.items()]

    def forget(self) -> None:
        """The connection closes: declared again on the next start."""
        self._queues.clear()
        self._tags.clear()
        self._bound.clear()
