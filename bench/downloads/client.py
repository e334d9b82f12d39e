"""Devices downloading a firmware file at once, at little CPU cost: a load generator.

Each device opens its own connection, sends one ``GET`` (its agent token as a bearer,
``Connection: close``) and reads the answer with a bare HTTP/1.1 reader
(``asyncio.BufferedProtocol`` on uvloop: the socket is read into one buffer per process
and the body goes straight into the device's SHA-256). A download counts only when
every byte arrived and the SHA-256 of what the device holds is the artifact's.

As a device would: a 503 is retried after its ``Retry-After`` (plus up to a second of
jitter); a transfer that breaks is resumed with ``Range: bytes=<held>-`` and
``If-Range: <ETag>`` (a 206 must start where the device stopped; a 200 starts over).

The devices are spread over client processes (``run_clients``); each process reports
per download (start, end, verified, 503s, retries, error) and its own CPU seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing as mp
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import uvloop

BUFFER = 256 * 1024


@dataclass
class Target:
    """Where the devices download from, and what they must end up with."""

    host: str
    port: int
    path: str
    size: int
    sha256: str
    attempts: int = 20
    timeout_s: float = 300.0  # one attempt, from connecting to the last byte


@dataclass
class Held:
    """What one device holds of the file so far."""

    hasher: Any = field(default_factory=hashlib.sha256)
    have: int = 0
    etag: str = ""


class Answer(asyncio.BufferedProtocol):
    """One request and its answer: status, headers, and the body (into ``held``'s hash
    for 200/206, kept for anything else)."""

    def __init__(self, request: bytes, view: memoryview, held: Held) -> None:
        self.request = request
        self.view = view
        self.held = held
        self.head = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.length = -1  # body bytes announced; -1 until the head is read
        self.got = 0
        self.other = bytearray()
        self.problem = ""
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        data = self.view[:nbytes]
        if self.length >= 0:
            self._body(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        rest = bytes(self.head[end + 4 :])
        self._parse(bytes(self.head[:end]))
        if not self.done.done():
            self._body(memoryview(rest))

    def _parse(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.length = int(self.headers.get("content-length", "-1"))
        if self.length < 0:
            self._finish(False, "no Content-Length")
            return
        if self.status == 200:  # the whole file: from the start
            self.held.hasher = hashlib.sha256()
            self.held.have = 0
        elif self.status == 206:
            start = self.headers.get("content-range", "").removeprefix("bytes ").split("-")[0]
            if start != str(self.held.have):
                self._finish(False, f"206 from {start}, held {self.held.have}")
                return
        self.held.etag = self.headers.get("etag", self.held.etag)
        if self.length == 0:
            self._finish(True)

    def _body(self, data: memoryview) -> None:
        if self.status in (200, 206):
            self.held.hasher.update(data)
            self.held.have += len(data)
        else:
            self.other += data
        self.got += len(data)
        if self.got >= self.length:
            self._finish(True)

    def _finish(self, complete: bool, problem: str = "") -> None:
        self.problem = problem
        if not self.done.done():
            self.done.set_result(complete)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(False)


@dataclass
class Outcome:
    """One device's download."""

    start: float
    end: float = 0.0
    verified: bool = False
    busy: int = 0  # 503 answers
    busy_types: dict[str, int] = field(default_factory=dict)  # their problem types
    retries: int = 0  # requests after the first
    resumed: int = 0  # of those, with Range
    error: str = ""


def request_for(target: Target, token: str, held: Held) -> bytes:
    lines = [
        f"GET {target.path} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        f"Authorization: Bearer {token}",
        "Connection: close",
    ]
    if held.have:
        lines.append(f"Range: bytes={held.have}-")
        if held.etag:
            lines.append(f"If-Range: {held.etag}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def problem_type(body: bytes) -> str:
    """The ``type`` of an RFC 9457 problem body (its last part) and the start of its
    ``detail``, or what it is."""
    try:
        problem = json.loads(body)
        kind = str(problem["type"]).rsplit(":", 1)[-1]
    except (ValueError, KeyError, TypeError):
        return "not a problem document"
    detail = str(problem.get("detail", ""))
    return f"{kind}: {detail[:60]}" if detail else kind


async def _attempt(target: Target, token: str, held: Held, view: memoryview) -> Answer:
    loop = asyncio.get_running_loop()
    answer = Answer(request_for(target, token, held), view, held)
    try:
        async with asyncio.timeout(target.timeout_s):
            await loop.create_connection(lambda: answer, target.host, target.port)
            await answer.done
    finally:
        if answer.transport is not None:
            answer.transport.close()
    return answer


async def download(target: Target, token: str, view: memoryview, start: float) -> Outcome:
    """One device: request until it holds the whole file (or gives up)."""
    outcome = Outcome(start)
    held = Held()
    for attempt in range(target.attempts):
        if attempt:
            outcome.retries += 1
            outcome.resumed += held.have > 0
        try:
            answer = await _attempt(target, token, held, view)
        except (OSError, TimeoutError) as exc:
            outcome.error = type(exc).__name__
            await asyncio.sleep(random.uniform(0.5, 1.0))
            continue
        if answer.status == 503:
            outcome.busy += 1
            kind = problem_type(bytes(answer.other))
            outcome.busy_types[kind] = outcome.busy_types.get(kind, 0) + 1
            retry_after = float(answer.headers.get("retry-after", "1") or 1)
            await asyncio.sleep(retry_after + random.uniform(0.0, 1.0))
            continue
        if answer.status not in (200, 206):
            outcome.error = f"HTTP {answer.status}"
            break
        if answer.problem:
            outcome.error = answer.problem
            break
        if held.have < target.size:  # broken transfer: resume
            outcome.error = "broken transfer"
            continue
        outcome.verified = held.have == target.size and held.hasher.hexdigest() == target.sha256
        outcome.error = "" if outcome.verified else "SHA-256 or size mismatch"
        break
    else:
        outcome.error = outcome.error or "gave up"
    outcome.end = time.perf_counter()
    return outcome


async def _devices(target: Target, tokens: list[str], start_at: float) -> list[Outcome]:
    view = memoryview(bytearray(BUFFER))  # shared: each read is hashed before the next
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    start = time.perf_counter()
    return list(await asyncio.gather(*(download(target, t, view, start) for t in tokens)))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client(target: Target, tokens: list[str], start_at: float, out: Any) -> None:
    cpu = _cpu_s()
    outcomes = uvloop.run(_devices(target, tokens, start_at))
    out.put(([o.__dict__ for o in outcomes], _cpu_s() - cpu))


def run_clients(
    target: Target, tokens: list[str], processes: int, lead_s: float = 1.5
) -> tuple[float, list[Outcome], float]:
    """Every token downloads ``target`` once, all starting together ``lead_s`` from now,
    from ``processes`` processes; the common start time (perf_counter, CLOCK_MONOTONIC
    and so shared), the outcomes, and the clients' CPU seconds."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.perf_counter() + lead_s
    procs = [
        ctx.Process(target=_client, args=(target, tokens[i::processes], start_at, out))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    outcomes: list[Outcome] = []
    cpu = 0.0
    for _ in procs:
        rows, seconds = out.get()
        outcomes += [Outcome(**row) for row in rows]
        cpu += seconds
    for p in procs:
        p.join()
    return start_at, outcomes, cpu
