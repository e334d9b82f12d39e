"""``fieldwatch serve`` (or bench/serve_variant.py, or any ASGI server command) as a
subprocess on a port of its own, and logging in to it."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from harness.database import CLI, PASSWORD
from harness.timing import now

SERVE_VARIANT = Path(__file__).resolve().parents[1] / "serve_variant.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess on a fixed port: ``fieldwatch serve`` with ``serve_args``;
    with ``variant``, bench/serve_variant.py with those uvicorn options; with
    ``command``, that command (it is given ``--port``)."""

    def __init__(
        self,
        env: dict[str, str],
        port: int | None = None,
        variant: list[str] | None = None,
        tracemalloc: int = 0,
        serve_args: list[str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.env = env
        self.serve_args = serve_args or []
        self.port = port or free_port()
        self.variant = variant
        self.tracemalloc = tracemalloc
        self.command = command
        self.control = Path(tempfile.mkdtemp(prefix="fw-bench-ctl-"))
        self.log = Path(tempfile.mkstemp(prefix="fw-bench-server-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _argv(self) -> list[str]:
        port = ["--port", str(self.port)]
        if self.command is not None:
            return [*self.command, *port]
        if self.variant is None:
            return [*CLI, "serve", *port, *self.serve_args]
        argv = [sys.executable, str(SERVE_VARIANT), *port, "--control-dir", str(self.control),
                *self.variant]  # fmt: skip
        if self.tracemalloc:
            argv += ["--tracemalloc", str(self.tracemalloc)]
        return argv

    def start(self, wait: bool = True) -> Server:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self._argv(), env=self.env, stdout=log, stderr=log)
        if wait:
            self.wait_ready()
        return self

    def accepting(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
        ):
            return True
        return False

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait until the port accepts connections (uvicorn binds it once start-up is
        done), then until /health answers; returns when the port first accepted."""
        deadline = time.monotonic() + timeout
        while not self.accepting():
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; its log: {self.log}")
            time.sleep(0.01)
        accepted = now()
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/health", timeout=2).status_code < 500:
                    return accepted
            time.sleep(0.05)
        raise SystemExit(f"the server does not answer /health; its log: {self.log}")

    def rss(self) -> int:
        """The server's resident memory (with its worker processes, if any)."""
        proc = psutil.Process(self.pid)
        return sum(int(p.memory_info().rss) for p in [proc, *proc.children(recursive=True)])

    def request(self, what: str, timeout: float = 120) -> str:
        """Ask serve_variant.py's watcher for a gc or a tracemalloc snapshot."""
        if self.variant is None:
            return ""
        done = self.control / f"{what}.done"
        done.unlink(missing_ok=True)
        (self.control / what).write_text("")
        deadline = time.monotonic() + timeout
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return done.read_text() if done.exists() else ""

    def stop(self) -> float:
        """SIGTERM (uvicorn's graceful shutdown); the seconds it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = now()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return now() - t0

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def server(env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """``fieldwatch serve --workers N`` while the block runs; yields its base URL."""
    with Server(env, serve_args=["--workers", str(workers)]) as srv:
        yield srv.base


def login(base: str, email: str) -> str:
    r = httpx.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])
