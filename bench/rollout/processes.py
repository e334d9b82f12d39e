"""The rollout benchmark's client processes: each runs its share of the devices
(bench/rollout/device.py) in one uvloop event loop and answers the driver's requests
over a pipe: ``status`` (connected, updated, errors) and ``stop`` (the tally)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from typing import Any

import aiohttp
import psutil
import uvloop

from devices.clients import raise_nofile
from rollout.device import Device, Options, Stats


def client_process(base: str, tokens: list[str], options: Options, conn: Any) -> None:
    """The simulated devices yield the CPU to the server and the database (``nice``):
    on the benchmark's one machine they stand in for devices that are elsewhere, and
    the server's figures should not include its waits behind them."""
    raise_nofile()
    if options.nice:
        os.nice(options.nice)
    uvloop.run(_serve(base, tokens, options, conn))


async def _serve(base: str, tokens: list[str], options: Options, conn: Any) -> None:
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=600, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        devices = [Device(t, base, http, stats, options) for t in tokens]
        gate = asyncio.Semaphore(100)
        tasks = [asyncio.create_task(d.run(gate)) for d in devices]
        loop = asyncio.get_running_loop()
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            if request[0] == "status":
                connected = sum(1 for d in devices if d.ws is not None)
                conn.send((connected, stats.completed, sum(stats.errors.values())))
            elif request[0] == "stop":
                for task in tasks:
                    task.cancel()
                for device in devices:
                    for t in list(device.tasks):
                        t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                cpu = psutil.Process().cpu_times()
                conn.send({**stats.tally(), "cpu_s": cpu.user + cpu.system})
                return


class ClientProcesses:
    """``tokens`` split over ``n`` client processes."""

    def __init__(self, base: str, tokens: list[str], n: int, options: Options) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for i in range(n):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=client_process, args=(base, tokens[i::n], options, theirs))
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def _ask(self, request: tuple[Any, ...]) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(request)
        return [pipe.recv() for pipe in self.pipes]

    def status(self) -> tuple[int, int, int]:
        """Devices connected, devices whose version report the server acknowledged,
        client-side errors."""
        answers = self._ask(("status",))
        return tuple(sum(a[i] for a in answers) for i in range(3))  # type: ignore[return-value]

    def wait_connected(self, count: int, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while True:
            connected, _, errors = self.status()
            if connected >= count or time.monotonic() > deadline:
                return connected
            if time.monotonic() - last > 5:
                print(f"    {connected:,}/{count:,} connected ({errors} client errors)", flush=True)
                last = time.monotonic()
            time.sleep(0.2)

    def stop(self) -> list[dict[str, Any]]:
        answers = self._ask(("stop",))
        for proc in self.procs:
            proc.join(timeout=30)
        return answers
