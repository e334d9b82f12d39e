"""One simulated device of the rollout benchmark, speaking the device protocol
(docs/device-protocol.md) itself: many of them share an event loop.

A device keeps its WebSocket open. On a ``firmware_update`` frame it reports
``acknowledged`` and ``downloading`` (``bytes`` 0), downloads the artifact over HTTP from
``download_path`` with its token (resuming with ``Range``/``If-Range`` after a broken
transfer or a 503, after its ``Retry-After``), reports ``downloading`` again half-way,
checks size and SHA-256 against the update (``failed``/``checksum_mismatch`` otherwise),
reports ``downloaded``, ``verified``, ``installing``, waits ``install_s``, reports
``rebooting``, closes its socket, waits ``reboot_s``, connects again and sends a
``heartbeat`` with the new ``firmware_version``: the server completes the update on that.
Each report waits for the server's ``ack`` (sent after its commit) before the next; the
time from sending a frame to its ack is kept per state.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import connect

from harness.timing import now

CHUNK = 65_536
ACK_TIMEOUT_S = 60.0
#: How long a device waits for the welcome once its WebSocket is open: like the SDK's
#: client (fieldwatch.agent), patient; a device that gave up sooner and reconnected would
#: replace its own waiting connection and add to the load.
WELCOME_TIMEOUT_S = 300.0
#: Error frames that ask for the frame again later (after ``retry_after``).
RESEND = {"unavailable", "overloaded", "rate_limited"}


@dataclass
class Options:
    install_s: float = 1.0
    reboot_s: float = 2.0
    open_timeout: float = 30.0
    nice: int = 10  # the client processes' scheduling niceness (0: as the server's)


@dataclass
class Stats:
    """What the devices of one process saw and did."""

    rtt: dict[str, list[float]] = field(default_factory=dict)  # frame → seconds to its ack
    # connect → welcome, seconds: "first" connects, "after reboot", "retry" after a loss
    welcome: dict[str, list[float]] = field(default_factory=dict)
    updates: int = 0  # firmware_update frames received
    resends: int = 0  # of those, for an update this device was already doing or had done
    downloads: int = 0  # files fetched whole and checked
    download_bytes: int = 0  # bytes received over HTTP (resumed parts included)
    busy: int = 0  # 503 answers (download cap), retried after Retry-After
    resumed: int = 0  # Range requests after a broken transfer or a 503
    checksum_mismatch: int = 0
    completed: int = 0  # version reports acknowledged by the server
    reboots: int = 0
    reconnects: int = 0  # connections lost or refused other than by a reboot
    errors: Counter[str] = field(default_factory=Counter)  # by kind

    def tally(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["errors"] = dict(self.errors)
        return out


class Device:
    def __init__(
        self, token: str, base: str, http: aiohttp.ClientSession, stats: Stats, options: Options
    ) -> None:
        self.token = token
        self.base = base
        self.http = http
        self.stats = stats
        self.options = options
        self.version = "1.0.0"
        self.ws: Any = None
        self.up = asyncio.Event()
        self.acks: dict[str, tuple[float, str, asyncio.Future[dict[str, Any]]]] = {}
        self.updates: dict[str, asyncio.Task[bool]] = {}
        self.done: set[str] = set()
        self.seq = 0
        self.rebooting = False
        self.report_version = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.heartbeat_s = 60.0  # the welcome's server_config says

    # -- the connection ------------------------------------------------------------------

    async def run(self, gate: asyncio.Semaphore | None) -> None:
        attempt = 0
        url = f"{self.base.replace('http', 'ws', 1)}/ws/device/{self.token}"
        kind = "first"
        while True:
            try:
                started = now()
                if gate is not None:  # paces the first connects only
                    async with gate:
                        started = now()
                        ws = await self._open(url)
                    gate = None
                else:
                    ws = await self._open(url)
                self.stats.welcome.setdefault(kind, []).append(now() - started)
                attempt = 0
                await self._session(ws)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.errors[f"connection: {type(exc).__name__}"] += 1
            finally:
                self.up.clear()
                self.ws = None
                for _, _, future in self.acks.values():
                    if not future.done():
                        future.set_exception(ConnectionError("connection lost"))
                self.acks.clear()
            if self.rebooting:
                self.rebooting = False
                kind = "after reboot"
                await asyncio.sleep(self.options.reboot_s)
                continue
            kind = "retry"
            self.stats.reconnects += 1
            delay = min(30.0, 2.0**attempt)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            attempt += 1

    async def _open(self, url: str) -> Any:
        ws = await connect(  # keepalive: the server's pings (a device answers them)
            url,
            compression=None,
            open_timeout=self.options.open_timeout,
            max_size=2**20,
            ping_interval=None,
        )
        try:
            async with asyncio.timeout(WELCOME_TIMEOUT_S):
                welcome = orjson.loads(await ws.recv())
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"no welcome: {str(welcome)[:200]}")
            config = welcome.get("server_config") or {}
            self.heartbeat_s = float(config.get("heartbeat_interval") or 60)
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _session(self, ws: Any) -> None:
        self.ws = ws
        self.up.set()
        if self.report_version:
            self._spawn(self._version_report())
        beats = asyncio.create_task(self._heartbeats())
        try:
            async for raw in ws:
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "ack":
                    self._acked(message)
                elif kind == "firmware_update":
                    self._update(message)
                elif kind == "error":
                    self.stats.errors[f"error frame: {message.get('code')}"] += 1
                    self._acked(message)
        finally:
            beats.cancel()
            await ws.close()

    async def _heartbeats(self) -> None:
        """A plain heartbeat every ``heartbeat_interval`` (the first at a random point
        of it), as the protocol asks: a silent device is shown offline after about
        three intervals even with its socket open."""
        await asyncio.sleep(random.uniform(0, self.heartbeat_s))
        while True:
            await self._request("beat", {"type": "heartbeat"})
            await asyncio.sleep(self.heartbeat_s)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- frames and their acks ---------------------------------------------------------

    def _acked(self, message: dict[str, Any]) -> None:
        entry = self.acks.pop(str(message.get("ref")), None)
        if entry is None:
            return
        sent, label, future = entry
        self.stats.rtt.setdefault(label, []).append(now() - sent)
        if not future.done():
            future.set_result(message)

    async def _request(self, label: str, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame`` once the device is connected and wait for its ack; sent again
        (the reports are idempotent) if the connection drops first."""
        for _ in range(30):
            await self.up.wait()
            self.seq += 1
            ref = f"{label}-{self.seq}"
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.acks[ref] = (now(), label, future)
            try:
                await self.ws.send(orjson.dumps({**frame, "id": ref}).decode())
                reply = await asyncio.wait_for(future, ACK_TIMEOUT_S)
            except Exception as exc:  # lost (ConnectionClosed, ConnectionError), timed out
                self.acks.pop(ref, None)
                self.stats.errors[f"{label}: {type(exc).__name__}"] += 1
                await asyncio.sleep(1.0)
                continue
            if reply.get("type") == "error":
                if reply.get("code") not in RESEND:
                    raise RuntimeError(f"{label}: {reply.get('code')}")
                await asyncio.sleep(float(reply.get("retry_after") or 1.0))
                continue  # nothing was stored: resend, as the protocol says
            return reply
        raise RuntimeError(f"{label}: no ack after 30 tries")

    async def _report(self, update_id: str, state: str, **extra: Any) -> dict[str, Any]:
        frame = {"type": "firmware_state", "update_id": update_id, "state": state, **extra}
        return await self._request(state, frame)

    async def _version_report(self) -> None:
        await self._request("heartbeat", {"type": "heartbeat", "firmware_version": self.version})
        self.report_version = False
        self.stats.completed += 1

    # -- the update ----------------------------------------------------------------------

    def _update(self, message: dict[str, Any]) -> None:
        self.stats.updates += 1
        uid = str(message["update_id"])
        running = self.updates.get(uid)
        if uid in self.done or (running is not None and not running.done()):
            self.stats.resends += 1
            return
        self.updates[uid] = self._spawn(self._apply(message))

    async def _apply(self, message: dict[str, Any]) -> bool:
        uid = str(message["update_id"])
        try:
            await self._report(uid, "acknowledged")
            await self._report(uid, "downloading", bytes=0)
            digest, size = await self._download(message)
            if digest != message["sha256"] or size != message["size"]:
                self.stats.checksum_mismatch += 1
                await self._report(
                    uid, "failed", reason="checksum_mismatch", detail=f"got {digest} ({size} B)"
                )
                return False
            self.stats.downloads += 1
            for state in ("downloaded", "verified", "installing"):
                await self._report(uid, state)
            await asyncio.sleep(self.options.install_s)
            await self._report(uid, "rebooting")
        except Exception as exc:
            self.stats.errors[f"update: {exc}"[:120]] += 1
            return False
        self.done.add(uid)
        self.version = str(message["version"])
        self.report_version = True
        self.rebooting = True
        self.stats.reboots += 1
        if self.ws is not None:
            await self.ws.close()
        return True

    async def _download(self, message: dict[str, Any]) -> tuple[str, int]:
        """The file's SHA-256 and size, fetched with the device token (resumed with
        ``Range`` after a broken transfer; after a 503, once its Retry-After passed)."""
        uid, sha = str(message["update_id"]), str(message["sha256"])
        url = self.base + str(message["download_path"])
        digest, got, half_reported = hashlib.sha256(), 0, False
        for _ in range(20):
            headers = {"Authorization": f"Bearer {self.token}"}
            if got:
                headers |= {"Range": f"bytes={got}-", "If-Range": f'"{sha}"'}
                self.stats.resumed += 1
            try:
                async with self.http.get(url, headers=headers) as r:
                    if r.status == 503:
                        self.stats.busy += 1
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    if r.status == 200 and got:  # the whole file again
                        digest, got = hashlib.sha256(), 0
                    elif r.status not in (200, 206):
                        self.stats.errors[f"download: HTTP {r.status}"] += 1
                        await asyncio.sleep(1.0)
                        continue
                    async for chunk in r.content.iter_chunked(CHUNK):
                        digest.update(chunk)
                        got += len(chunk)
                        self.stats.download_bytes += len(chunk)
                        if not half_reported and got * 2 >= int(message["size"]):
                            half_reported = True
                            await self._report(uid, "downloading", bytes=got)
                return digest.hexdigest(), got
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.stats.errors[f"download: {type(exc).__name__}"] += 1
                await asyncio.sleep(1.0)
        raise RuntimeError("download: gave up after 20 tries")
