"""Batcher: concurrent calls are handled together, in order, each caller gets its own
result, and a failure reaches exactly the callers of the failed batch."""

from __future__ import annotations

import asyncio

import pytest

from fieldwatch.core.batching import Batcher


class Recorder:
    def __init__(self, fail_on: int | None = None, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.delay = delay

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [i * 10 for i in items]


async def test_a_lone_call_is_a_batch_of_one():
    recorder = Recorder()
    batcher = Batcher(recorder)
    assert await batcher.submit(4) == 40
    assert recorder.batches == [[4]]


async def test_calls_made_meanwhile_go_together_in_order():
    recorder = Recorder(delay=0.05)
    batcher = Batcher(recorder, max_batch=50)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0.01)  # the first batch is being handled
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 121)]
    results = await asyncio.gather(first, *rest)
    assert results == [i * 10 for i in range(121)]
    assert recorder.batches[0] == [0]
    assert [len(b) for b in recorder.batches[1:]] == [50, 50, 20]  # max_batch holds
    assert [i for b in recorder.batches for i in b] == list(range(121))
    assert batcher.batches == 4


async def test_a_failure_reaches_only_its_batch():
    recorder = Recorder(fail_on=7, delay=0.02)
    batcher = Batcher(recorder, max_batch=5)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(10)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert recorder.batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert results[:5] == [0, 10, 20, 30, 40]
    assert all(isinstance(r, ValueError) for r in results[5:])
    assert await batcher.submit(1) == 10  # and it goes on


async def test_a_cancelled_caller_does_not_disturb_the_others():
    recorder = Recorder(delay=0.05)
    batcher = Batcher(recorder)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(batcher.submit(2))
    stays = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == 10 and await stays == 30
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert recorder.batches == [[1], [2, 3]]  # its item was handled all the same
    await batcher.drain()


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(Recorder(), max_batch=0)
