"""Shared helpers for the benchmarks: a scratch PostgreSQL database and a real server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx

from fieldwatch.db.engine import normalize_url

PASSWORD = "bench-password-123"
CLI = [sys.executable, "-m", "fieldwatch"]


class ScratchDatabase:
    """A database next to ``base`` (default FIELDWATCH_BENCH_DATABASE_URL), dropped
    afterwards."""

    def __init__(self, name: str, base: str | None = None) -> None:
        base = base or os.environ.get(
            "FIELDWATCH_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        )
        self.name = name
        self.admin_dsn = normalize_url(base).set(drivername="postgresql").render_as_string(False)
        self.url = normalize_url(base).set(database=name)
        self.dsn = self.url.set(drivername="postgresql").render_as_string(False)

    async def _recreate(self, create: bool) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            if create:
                await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()

    def __enter__(self) -> ScratchDatabase:
        asyncio.run(self._recreate(True))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run(self._recreate(False))


def env_for(db: ScratchDatabase, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    env |= {
        "FIELDWATCH_DATABASE_URL": db.url.render_as_string(False),
        "FIELDWATCH_DATA_DIR": tempfile.mkdtemp(prefix="fieldwatch-bench-"),
        "FIELDWATCH_LOG_LEVEL": "WARNING",
        **extra,
    }
    return env


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([*CLI, *args], env=env, check=True, capture_output=True, text=True).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(env: dict[str, str], workers: int = 1) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def login(base: str, email: str) -> str:
    r = httpx.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])


def say(lines: list[str], text: str) -> None:
    """Print a figure as it is measured, and keep it for the results file."""
    print(text, flush=True)
    lines.append(text)


def write_results(name: str, lines: list[str]) -> None:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.txt").write_text("\n".join(lines) + "\n")
