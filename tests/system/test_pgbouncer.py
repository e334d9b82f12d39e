"""``FIELDWATCH_DB_PGBOUNCER``: ``fieldwatch serve`` behind a real PgBouncer in
transaction mode, with fewer server connections than the process has clients (its pool
and the telemetry writer's), so transactions keep moving between server connections.

Concurrent uploads take both of the writer's paths (a fresh batch's direct ``COPY`` and,
with repeats, the staging table that must not outlive its transaction), commands, device
listings and the console's login run alongside; every answer is right and the server
logs no error about prepared statements or missing relations."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from conftest import JWT_SECRET, Actor, Backend, missing
from fieldwatch.runtime import Runtime
from mqtt_helpers import free_port
from system.test_roles import Part, clean_env, start_part, wait_ready

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SERVER_CONNECTIONS = 2  # PgBouncer's pool: far fewer than the 10 + 2 clients


def pgbouncer_config(tmp: Path, port: int, upstream: str) -> Path:
    url = make_url(upstream)
    (tmp / "userlist.txt").write_text(f'"{url.username or "postgres"}" ""\n')
    config = tmp / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={url.host or '127.0.0.1'} port={url.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {tmp / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 200\nignore_startup_parameters = extra_float_digits\n"
        f"logfile = {tmp / 'pgbouncer.log'}\npidfile = {tmp / 'pgbouncer.pid'}\n"
    )
    return config


@pytest.fixture
def pgbouncer(backend: Backend) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the test database; its URL."""
    if backend.name != "postgres":
        pytest.skip("PgBouncer pools PostgreSQL connections")
    if not os.access(PGBOUNCER, os.X_OK):
        missing("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    # Run as root, it drops to nobody (it refuses to run as root), who must reach its
    # files: pytest's directories are the owner's only.
    home = Path(tempfile.mkdtemp(prefix="fw-pgbouncer-"))
    home.chmod(0o777)
    port = free_port()
    config = pgbouncer_config(home, port, backend.url)
    for path in home.iterdir():
        path.chmod(0o644)
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if process.poll() is not None:
                out = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"pgbouncer exited: {out}")
            time.sleep(0.1)
        yield (
            make_url(backend.url)
            .set(port=port, host="127.0.0.1")
            .render_as_string(hide_password=False)
        )
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def served(pgbouncer: str, runtime: Runtime, tmp_path: Path) -> Iterator[Part]:
    """``fieldwatch serve`` over the PgBouncer; stopped before the database is emptied."""
    env = clean_env(
        FIELDWATCH_DATABASE_URL=pgbouncer,
        FIELDWATCH_DB_PGBOUNCER="true",
        FIELDWATCH_DB_POOL_SIZE="10",
        FIELDWATCH_JWT_SECRET=JWT_SECRET,
        FIELDWATCH_MQTT_PORT=str(free_port()),
    )
    part = start_part("api", "all", env, tmp_path)
    try:
        wait_ready([part])
        yield part
    finally:
        part.stop()


def readings(start: datetime, first: int, count: int) -> list[dict[str, object]]:
    return [
        {"timestamp": (start + timedelta(seconds=i)).isoformat(), "value": float(i)}
        for i in range(first, first + count)
    ]


async def test_serving_through_pgbouncer_in_transaction_mode(served: Part, operator: Actor) -> None:
    auth = operator.headers
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
        devices = []
        for i in range(8):
            r = await http.post("/api/v1/devices", json={"name": f"pgb-{i}", "type": "sensor"},
                                headers=auth)  # fmt: skip
            assert r.status_code == 201, r.text
            devices.append(r.json()["id"])

        async def upload(device: str, first: int) -> dict[str, object]:
            body = {"data_type": "temperature", "values": readings(start, first, 100)}
            r = await http.post(f"/api/v1/devices/{device}/data", json=body, headers=auth)
            assert r.status_code == 200, r.text
            return dict(r.json())

        async def command(device: str) -> int:
            r = await http.post(f"/api/v1/devices/{device}/commands",
                                json={"command": "reboot"}, headers=auth)  # fmt: skip
            return r.status_code

        async def listing() -> int:
            return (await http.get("/api/v1/devices?limit=50", headers=auth)).status_code

        # Each device: 0-99, then 50-149 (50 repeats: the staging table), then 150-249.
        for first in (0, 50, 150):
            answers = await asyncio.gather(
                *(upload(d, first) for d in devices),
                *(command(d) for d in devices),
                *(listing() for _ in range(8)),
            )
            uploads, statuses = answers[:8], answers[8:]
            expected = {"accepted": 50, "duplicates": 50} if first == 50 else {
                "accepted": 100, "duplicates": 0}  # fmt: skip
            for got in uploads:
                assert isinstance(got, dict)
                assert {k: got[k] for k in expected} == expected
                assert got["rejected"] == []
            assert statuses == [201] * 8 + [200] * 8

        for device in devices:
            r = await http.get(f"/api/v1/devices/{device}/data",
                               params={"data_type": "temperature", "limit": 1000},
                               headers=auth)  # fmt: skip
            assert r.status_code == 200, r.text
            values = sorted(v["value"] for v in r.json()["items"])
            assert values == [float(i) for i in range(250)]
            r = await http.get(f"/api/v1/devices/{device}/commands", headers=auth)
            assert r.json()["total"] == 3

    log = served.log.read_text(errors="replace")
    for trouble in ("prepared statement", "does not exist", "Traceback", " 500 "):
        assert trouble not in log, served.tail()
