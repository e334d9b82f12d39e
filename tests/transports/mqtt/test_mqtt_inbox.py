"""The link's inbox hands the handler batches in order, up to ``depth`` of them at once:
the next batch is handed over while one is still in hand, a further one waits in the
queue (where ``lag`` and back-pressure see it), and ``idle`` is set only once every
batch is done."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from fieldwatch.transports.mqtt.link.driver import LinkDriver
from fieldwatch.transports.mqtt.link.inbox import Inbox
from fieldwatch.transports.mqtt.link.messages import IncomingMessage
from mqtt_link_helpers import eventually


class Socketless:
    """The inbox's view of a driver: reading paused or not, the link closing or not."""

    paused = False
    closing = False

    def resume_reading(self) -> None:
        self.paused = False


def message(n: int) -> IncomingMessage:
    return IncomingMessage(f"t/{n}", str(n).encode(), 1, False, n, received=time.monotonic())


async def run(depth: int) -> tuple[list[list[int]], int, Inbox]:
    inbox = Inbox(
        cast(LinkDriver, Socketless()), batch_size=2, max_pending=10,
        publishing=lambda: False, depth=depth,
    )  # fmt: skip
    in_hand: list[list[int]] = []
    most, release = [0], asyncio.Event()
    busy = [0]

    async def handler(batch: list[IncomingMessage]) -> None:
        in_hand.append([m.mid for m in batch])
        busy[0] += 1
        most[0] = max(most[0], busy[0])
        await release.wait()
        busy[0] -= 1

    inbox.handler = handler
    inbox.start("test-inbox")
    for n in range(6):
        inbox.put(message(n))
    await eventually(lambda: len(in_hand) == depth, "batches in hand")
    await asyncio.sleep(0.05)
    assert len(in_hand) == depth  # no more than depth batches in hand
    assert len(inbox) == 6 - 2 * depth  # the rest waits in the queue
    assert not inbox.idle.is_set() and inbox.lag() > 0
    release.set()
    await eventually(lambda: len(in_hand) == 3 and inbox.idle.is_set(), "all handled")
    await inbox.stop()
    return in_hand, most[0], inbox


async def test_two_batches_in_hand_at_once_in_order() -> None:
    in_hand, most, inbox = await run(depth=2)
    assert in_hand == [[0, 1], [2, 3], [4, 5]] and most == 2
    assert inbox.lag() == 0.0


async def test_one_batch_at_a_time_by_default() -> None:
    in_hand, most, _ = await run(depth=1)
    assert in_hand == [[0, 1], [2, 3], [4, 5]] and most == 1


async def test_stopping_cancels_the_batches_in_hand() -> None:
    inbox = Inbox(
        cast(LinkDriver, Socketless()), batch_size=1, max_pending=10,
        publishing=lambda: False, depth=2,
    )  # fmt: skip
    cancelled: list[int] = []

    async def handler(batch: list[IncomingMessage]) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(batch[0].mid)
            raise

    inbox.handler = handler
    inbox.start("test-inbox")
    inbox.put(message(0))
    inbox.put(message(1))
    await eventually(lambda: inbox.lag() > 0 and len(inbox) == 0, "both in hand")
    await asyncio.sleep(0.02)
    await inbox.stop()
    assert sorted(cancelled) == [0, 1]


async def test_once_full_the_inbox_takes_nothing_until_half_is_handled() -> None:
    """Senders that wait for room (the embedded broker's handover) are not overtaken by
    new ones: a full inbox has room again only once half of what waits is handled."""
    inbox = Inbox(
        cast(LinkDriver, Socketless()), batch_size=1, max_pending=4, publishing=lambda: False
    )
    gate: asyncio.Queue[None] = asyncio.Queue()

    async def one_at_a_time(batch: list[IncomingMessage]) -> None:
        await gate.get()

    inbox.handler = one_at_a_time
    inbox.start("test-inbox")
    inbox.put(message(0))
    await eventually(lambda: len(inbox) == 0, "one in hand")
    for n in range(1, 5):  # four waiting: full
        assert inbox.has_room()
        inbox.put(message(n))
    assert not inbox.has_room()
    waiter = asyncio.create_task(inbox.wait_room())
    gate.put_nowait(None)  # one handled: 3 wait, under the limit but over half of it
    await eventually(lambda: len(inbox) == 3, "one more in hand")
    await asyncio.sleep(0.05)
    assert not inbox.has_room() and not waiter.done()
    gate.put_nowait(None)  # 2 wait: half
    await eventually(lambda: waiter.done(), "room again")
    assert inbox.has_room()
    for _ in range(5):
        gate.put_nowait(None)
    await inbox.stop()
