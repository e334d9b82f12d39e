"""Parts of the gateway's batches in hand at once (``turns``): prepared in arrival
order, acknowledged in that order whatever order their stores finish in, and a part
that acts on the spot prepared only once the part before it is done."""

from __future__ import annotations

import asyncio

import pytest

from fieldwatch.transports.mqtt.turns import Turns


async def part(
    turns: Turns, name: str, store_s: float, log: list[str], acting: bool = False
) -> None:
    async with turns.prepare(after_previous=acting) as turn:
        log.append(f"prepared {name}")
    try:
        await asyncio.sleep(store_s)  # its store
        log.append(f"stored {name}")
        await turn.ready()
        log.append(f"acked {name}")
    finally:
        turn.done()


async def test_acknowledgements_keep_the_order_when_stores_finish_out_of_it() -> None:
    turns, log = Turns(), []
    await asyncio.gather(part(turns, "1", 0.2, log), part(turns, "2", 0.01, log))
    assert log == ["prepared 1", "prepared 2", "stored 2", "stored 1", "acked 1", "acked 2"]


async def test_a_part_that_acts_on_the_spot_waits_for_the_one_before() -> None:
    turns, log = Turns(), []
    await asyncio.gather(part(turns, "1", 0.1, log), part(turns, "2", 0.01, log, acting=True))
    assert log == ["prepared 1", "stored 1", "acked 1", "prepared 2", "stored 2", "acked 2"]


async def test_a_failed_part_gives_its_turn_up() -> None:
    turns, log = Turns(), []

    async def failing() -> None:
        async with turns.prepare(after_previous=False) as turn:
            log.append("prepared 1")
        try:
            await asyncio.sleep(0.05)
            raise ConnectionError("the database went away")
        finally:
            turn.done()

    results = await asyncio.gather(failing(), part(turns, "2", 0.0, log), return_exceptions=True)
    assert isinstance(results[0], ConnectionError) and results[1] is None
    assert log == ["prepared 1", "prepared 2", "stored 2", "acked 2"]


async def test_a_part_failing_while_it_prepares_frees_the_next() -> None:
    turns, log = Turns(), []
    with pytest.raises(ValueError):
        async with turns.prepare(after_previous=False):
            raise ValueError("a lookup failed")
    await asyncio.wait_for(part(turns, "2", 0.0, log), 1)
    assert log == ["prepared 2", "stored 2", "acked 2"]
