"""A scratch PostgreSQL database next to the benchmark's, the server's environment for
it, and the ``fieldwatch`` CLI (migrations, the benchmark's admin)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile

import asyncpg

from fieldwatch.db.engine import normalize_url

PASSWORD = "bench-password-123"
CLI = [sys.executable, "-m", "fieldwatch"]
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


class ScratchDatabase:
    """A database next to ``base`` (default FIELDWATCH_BENCH_DATABASE_URL), dropped
    afterwards."""

    def __init__(self, name: str, base: str | None = None) -> None:
        base = base or os.environ.get("FIELDWATCH_BENCH_DATABASE_URL", DEFAULT_URL)
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
    """The caller's environment without its FIELDWATCH_ settings, pointed at ``db``."""
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


def set_up(env: dict[str, str], email: str, *workspaces: str) -> None:
    """Migrate the database, then create the admin ``email`` (password ``PASSWORD``) in
    each of ``workspaces``."""
    cli(env, "db", "upgrade")
    for workspace in workspaces:
        cli(env, "users", "create", email, "--role", "admin", "--workspace", workspace,
            "--password", PASSWORD)  # fmt: skip
