"""Lean WebSocket devices for the memory, round-trip and storm parts: many in one event
loop, and those loops spread over client processes that the driver asks for their
status."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop
from websockets.asyncio.client import connect

from harness.timing import now


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class DeviceOptions:
    reconnect: bool = False
    backoff_base: float = 1.0  # first wait: uniform(base / 2, base), as the protocol says
    backoff_cap: float = 30.0
    compression: str | None = None  # "deflate": the websockets client's default offer
    open_timeout: float = 30.0


@dataclass
class DeviceState:
    token: str
    welcomes: list[float] = field(default_factory=list)
    open: bool = False
    runs: dict[str, int] = field(default_factory=dict)  # command_id → times run
    deliveries: int = 0
    failures: int = 0
    # command_id → its command_result frame, until the server acknowledges it (after its
    # commit); resent after a reconnect, as the protocol says.
    unacked: dict[str, str] = field(default_factory=dict)


class Devices:
    """Many lean devices in one event loop: each keeps a WebSocket open, answers every
    ``command`` at once with ``command_ack`` then ``command_result`` (deduplicated by
    ``command_id`` as the protocol says) and reconnects with jittered exponential backoff
    (``delay = min(cap, base * 2 ** attempt)``, ``sleep(uniform(delay / 2, delay))``)."""

    def __init__(self, ws_base: str, tokens: list[str], options: DeviceOptions) -> None:
        self.ws_base = ws_base
        self.options = options
        self.states = [DeviceState(t) for t in tokens]
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.errors: dict[str, int] = {}
        # Hooks for the round-trip part (command_id, perf_counter time).
        self.on_command: Callable[[str, float], None] | None = None
        self.on_result_sent: Callable[[str, float], None] | None = None
        self.on_result_acked: Callable[[str, float, dict[str, Any]], None] | None = None

    async def start(self, concurrency: int = 100) -> None:
        gate = asyncio.Semaphore(concurrency)
        self.tasks = [asyncio.create_task(self._run(s, gate)) for s in self.states]

    def connected(self, since: float = 0.0) -> tuple[int, float]:
        """How many devices are connected with a welcome at or after ``since``, and the
        latest of those welcomes."""
        times = [
            s.welcomes[-1] for s in self.states if s.open and s.welcomes and s.welcomes[-1] >= since
        ]
        return len(times), max(times, default=0.0)

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def tally(self) -> dict[str, Any]:
        """The commands run (command_id → times), frames and errors of these devices."""
        runs: dict[str, int] = {}
        for s in self.states:
            runs.update(s.runs)
        return {
            "runs": runs,
            "deliveries": sum(s.deliveries for s in self.states),
            "errors": self.errors,
            "failures": sum(s.failures for s in self.states),
            "welcomes": [s.welcomes for s in self.states],
        }

    async def _open(self, url: str, state: DeviceState) -> Any:
        """Connect and read the welcome frame."""
        ws = await connect(
            url,
            compression=self.options.compression,
            open_timeout=self.options.open_timeout,
            max_size=2**20,
        )
        try:
            async with asyncio.timeout(self.options.open_timeout):
                welcome = orjson.loads(await ws.recv())
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"no welcome: {welcome}")
        except BaseException:
            await ws.close()
            raise
        state.welcomes.append(now())
        state.open = True
        return ws

    async def _run(self, state: DeviceState, gate: asyncio.Semaphore | None) -> None:
        attempt = 0
        url = f"{self.ws_base}/ws/device/{state.token}"
        while not self.stopping:
            try:
                if gate is not None:  # paces the first connects only
                    async with gate:
                        ws = await self._open(url, state)
                    gate = None
                else:
                    ws = await self._open(url, state)
                attempt = 0
                try:
                    await self._session(ws, state)
                finally:
                    state.open = False
                    await ws.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, reset, closed, timed out: back off
                name = type(exc).__name__
                rcvd = getattr(exc, "rcvd", None)  # a close frame: say its code
                if rcvd is not None:
                    name += f":{rcvd.code}"
                self.errors[name] = self.errors.get(name, 0) + 1
                state.failures += 1
            if not self.options.reconnect or self.stopping:
                return
            delay = min(self.options.backoff_cap, self.options.backoff_base * 2**attempt)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            attempt += 1

    async def _session(self, ws: Any, state: DeviceState) -> None:
        for frame in list(state.unacked.values()):  # results the last server never confirmed
            await ws.send(frame)
        async for raw in ws:
            message = orjson.loads(raw)
            kind = message.get("type")
            if kind == "command":
                await self._command(ws, state, message)
            elif kind == "ack":
                ref = message.get("ref")
                if isinstance(ref, str) and ref.startswith("r:"):
                    state.unacked.pop(ref[2:], None)
                    if self.on_result_acked:
                        self.on_result_acked(ref[2:], now(), message)
            elif kind == "config":
                await ws.send(
                    orjson.dumps({"type": "config_applied", "version": message["version"]}).decode()
                )
            elif kind == "error":
                code = f"error:{message.get('code')}"
                self.errors[code] = self.errors.get(code, 0) + 1

    async def _command(self, ws: Any, state: DeviceState, message: dict[str, Any]) -> None:
        cid = str(message["command_id"])
        if self.on_command:
            self.on_command(cid, now())
        state.deliveries += 1
        await ws.send(
            orjson.dumps({"type": "command_ack", "command_id": cid, "id": f"a:{cid}"}).decode()
        )
        result = {
            "type": "command_result",
            "command_id": cid,
            "status": "completed",
            "result": {"pong": True},
            "id": f"r:{cid}",
        }
        if cid not in state.runs:  # a resend of a known command is not run again
            state.runs[cid] = 1  # "running" a ping: nothing to do
        frame = state.unacked[cid] = orjson.dumps(result).decode()
        await ws.send(frame)
        if self.on_result_sent:
            self.on_result_sent(cid, now())


def device_process(ws_base: str, tokens: list[str], options: DeviceOptions, conn: Any) -> None:
    """A client process holding ``tokens``' devices; answers the driver's requests on
    ``conn``: status [since], stop (answered with the devices' tally)."""
    raise_nofile()
    uvloop.run(_serve(ws_base, tokens, options, conn))


async def _serve(ws_base: str, tokens: list[str], options: DeviceOptions, conn: Any) -> None:
    devices = Devices(ws_base, tokens, options)
    await devices.start()
    loop = asyncio.get_running_loop()
    while True:
        request = await loop.run_in_executor(None, conn.recv)
        if request[0] == "status":
            conn.send((*devices.connected(request[1]), sum(devices.errors.values())))
        elif request[0] == "stop":
            await devices.stop()
            conn.send(devices.tally())
            return


class DeviceProcesses:
    """``tokens`` split over ``n`` client processes."""

    def __init__(self, ws_base: str, tokens: list[str], n: int, options: DeviceOptions) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for i in range(n):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=device_process, args=(ws_base, tokens[i::n], options, theirs))
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def _ask(self, request: tuple[Any, ...]) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(request)
        return [pipe.recv() for pipe in self.pipes]

    def connected(self, since: float = 0.0) -> tuple[int, float, int]:
        answers = self._ask(("status", since))
        return (sum(a[0] for a in answers), max(a[1] for a in answers), sum(a[2] for a in answers))

    def wait_connected(
        self, count: int, since: float = 0.0, timeout: float = 300, label: str = ""
    ) -> tuple[float, int]:
        """Poll until ``count`` devices have a welcome at/after ``since``; returns the
        latest welcome time and how many were connected at the end."""
        deadline = time.monotonic() + timeout
        last_print = time.monotonic()
        while True:
            n, latest, errors = self.connected(since)
            if n >= count or time.monotonic() > deadline:
                return latest, n
            if label and time.monotonic() - last_print > 5:
                print(
                    f"    {label}: {n:,}/{count:,} connected ({errors} client errors)", flush=True
                )
                last_print = time.monotonic()
            time.sleep(0.05)

    def stop(self) -> list[dict[str, Any]]:
        answers = self._ask(("stop",))
        for proc in self.procs:
            proc.join(timeout=30)
        return answers
