"""Property-based fuzzing of the whole HTTP API from its OpenAPI schema (schemathesis),
against a real server process: no answer may be a server error, and every answer must
match the schema it documents. Bounded: a few examples per operation, one worker."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from conftest import PG_URL, Backend, _create_pg_database, _drop_pg_database
from fieldwatch.db import migrate
from fieldwatch.db.engine import create_engine
from mqtt_helpers import free_port

FIELDWATCH = [sys.executable, "-m", "fieldwatch"]
SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli"]
EXAMPLES_PER_OPERATION = 3
PASSWORD = "fuzz-password-1234"


async def run(env: dict[str, str], *args: str, within: float = 120) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    text = out.decode(errors="replace")
    # On a failure, what it found (schemathesis prints each failure with a curl line).
    found = text[text.find("FAILURES") :] if "FAILURES" in text else text
    assert proc.returncode == 0, found[:6000]
    return text


@pytest.fixture
async def database(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own (the server writes freely in it)."""
    if backend.name == "sqlite":
        yield f"sqlite:///{tmp_path / 'fuzz.db'}"
        return
    assert PG_URL
    url, admin_dsn = await _create_pg_database(PG_URL)
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    try:
        yield url
    finally:
        await _drop_pg_database(admin_dsn, url)


async def test_fuzzing_the_api_finds_no_server_error(database: str, tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    env = {
        **clean,
        "FIELDWATCH_DATA_DIR": str(tmp_path / "data"),
        "FIELDWATCH_DATABASE_URL": database,
        "FIELDWATCH_MQTT_EMBEDDED": "false",
    }
    await run(env, *FIELDWATCH, "db", "upgrade")
    await run(env, *FIELDWATCH, "users", "create", "fuzz@example.com", "--role", "admin",
              "--workspace", "fuzz", "--password", PASSWORD)  # fmt: skip
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = await asyncio.create_subprocess_exec(
            *FIELDWATCH, "serve", "--port", str(port), env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            async with asyncio.timeout(30):
                while True:
                    try:
                        if (await http.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
            login = {"email": "fuzz@example.com", "password": PASSWORD}
            token = (await http.post("/api/v1/auth/login", json=login)).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            # An API key (a logout or password change met while fuzzing cannot end it) and
            # one real device, so the device routes get past their 404.
            r = await http.post("/api/v1/api-keys", json={"name": "fuzz", "role": "admin"},
                                headers=auth)  # fmt: skip
            key = r.json()["key"]
            r = await http.post("/api/v1/devices", json={"name": "Fuzzed", "type": "sensor"},
                                headers=auth)  # fmt: skip
            device_id = r.json()["id"]
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            f'headers = {{ Authorization = "Bearer {key}" }}\n'
            f'[parameters]\n"path.device_id" = "{device_id}"\n'
        )
        report = await run(
            env, *SCHEMATHESIS, "--config-file", str(config), "run", f"{base}/openapi.json",
            "--max-examples", str(EXAMPLES_PER_OPERATION), "--workers", "1",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
            "--seed", "20261202", "--no-color", "--request-timeout", "30",
            within=600,
        )  # fmt: skip
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated, report[-3000:]
    assert generated.group(1) == generated.group(2)  # every case passed both checks
    assert int(generated.group(1)) > 1000  # and it really ran (every operation)
    server_log = log.read_text(errors="replace")
    assert "unhandled error" not in server_log and "Traceback" not in server_log, server_log[-3000:]
