"""One ``fieldwatch serve --role …`` process of a local topology (``devtools.topology``):
started on a loopback port of its own with its output in a log file, ready when its
``/health/ready`` answers 200 (its database, Redis, RabbitMQ and MQTT checked), stopped
gracefully (SIGTERM, as an orchestrator stops a container), killed (SIGKILL, a crash) and
started again on the same port, where nginx still sends its share of the requests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FIELDWATCH = [sys.executable, "-m", "fieldwatch"]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class PartFailed(RuntimeError):
    """A process of the topology exited, or did not become ready."""


@dataclass
class Part:
    name: str  # api-1, gateway-1, worker-1, …
    role: str  # api, gateway, worker
    port: int
    env: dict[str, str] = field(repr=False)
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Part:
        """Start the process (its own session: a Ctrl-C in the terminal reaches only the
        topology, which stops its parts in order)."""
        argv = [*FIELDWATCH, "serve", "--role", self.role, "--host", "127.0.0.1",
                "--port", str(self.port)]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    async def wait_ready(self, within_s: float = READY_TIMEOUT_S) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if self.process is None or self.process.poll() is not None:
                    code = None if self.process is None else self.process.returncode
                    raise PartFailed(f"{self.name} exited ({code}); its log:\n{self.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/health/ready")).status_code == 200:
                        return
                if loop.time() > deadline:
                    raise PartFailed(f"{self.name} not ready in {within_s:.0f} s:\n{self.tail()}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the process is gone at once, without closing anything (a crash)."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    async def stop(self, grace_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``grace_s`` seconds."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

    async def restart(self) -> None:
        """Start it again on the same port (after a kill or a stop) and wait until ready."""
        await self.stop()
        self.start()
        await self.wait_ready()

    async def metrics(self) -> str:
        """Its Prometheus metrics (every role serves ``/metrics``)."""
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{self.url}/metrics")
        response.raise_for_status()
        return response.text

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
