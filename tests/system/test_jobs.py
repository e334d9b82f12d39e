"""Periodic jobs: each tick of a shared job claimed by one process (``system.jobs``), on
both databases; several runners over one database stand for several worker processes
(the processes themselves: ``test_roles.py``)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from fieldwatch.runtime import Runtime
from fieldwatch.system.jobs import JobRunner
from fieldwatch.system.repository import JobRepository

INTERVAL_S = 0.1


def runners(runtime: Runtime, n: int) -> list[JobRunner]:
    return [JobRunner(runtime.sessionmaker, claims=True, owner=f"worker-{i}") for i in range(n)]


async def test_a_tick_is_claimed_once_and_never_an_older_one(runtime: Runtime) -> None:
    first, second = runners(runtime, 2)
    assert await first.claim("sweep", 1_000) is True
    assert await second.claim("sweep", 1_000) is False  # taken
    assert await second.claim("sweep", 2_000) is True
    assert await first.claim("sweep", 1_500) is False  # older than the newest claimed
    assert await first.claim("other", 1_500) is True  # each job has its own ticks
    async with runtime.sessionmaker() as session:
        row = await JobRepository(session).get("sweep")
    assert row is not None
    assert (row.tick_ms, row.runs, row.owner) == (2_000, 2, "worker-1")


async def test_claims_at_the_same_moment_give_the_tick_to_one(runtime: Runtime) -> None:
    many = runners(runtime, 6)
    for tick in (10_000, 20_000, 30_000):
        won = await asyncio.gather(*(r.claim("race", tick) for r in many))
        assert sorted(won) == [False] * 5 + [True]


async def test_two_runners_split_the_ticks_of_a_shared_job(runtime: Runtime) -> None:
    """Both wake on every tick; each tick runs in exactly one of them. A local job runs
    in both."""
    ran: dict[str, list[int]] = defaultdict(list)
    local: dict[str, int] = defaultdict(int)
    pair = runners(runtime, 2)
    for runner in pair:

        async def shared(runner: JobRunner = runner) -> None:
            ran[runner.owner].append(runner.last_tick["shared"])

        async def own(runner: JobRunner = runner) -> None:
            local[runner.owner] += 1

        runner.start("shared", INTERVAL_S, shared)
        runner.start("own", INTERVAL_S, own, shared=False)
    await asyncio.sleep(20 * INTERVAL_S + INTERVAL_S / 2)
    for runner in pair:
        await runner.stop()

    first, second = (set(ran[r.owner]) for r in pair)
    assert not first & second, (first, second)  # never both
    ticks = sorted(first | second)
    step = round(INTERVAL_S * 1000)
    assert len(ticks) >= 15  # about 20: a loop held up past a tick skips it
    assert all(tick % step == 0 for tick in ticks)  # on the interval's grid
    tried = [r.runs["shared"] + r.elsewhere["shared"] for r in pair]
    assert min(tried) >= len(ticks) - 1  # each runner tried (nearly) every tick
    async with runtime.sessionmaker() as session:
        row = await JobRepository(session).get("shared")
    assert row is not None
    # The row counts what was claimed: a tick claimed as the runners stopped was not run.
    assert (row.runs, row.tick_ms) in {(len(ticks), ticks[-1]), (len(ticks) + 1, ticks[-1] + step)}
    assert all(n >= 15 for n in local.values()) and len(local) == 2


async def test_a_failing_run_is_counted_and_the_next_tick_runs(runtime: Runtime) -> None:
    runner = JobRunner(runtime.sessionmaker, claims=False)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")

    runner.start("flaky", INTERVAL_S, flaky)
    runner.start("off", 0, flaky)  # an interval of 0: not started
    await asyncio.sleep(3.5 * INTERVAL_S)
    await runner.stop()
    assert calls >= 2 and runner.failed["flaky"] == 1 and runner.runs["flaky"] == calls
    assert "off" not in runner.jobs
