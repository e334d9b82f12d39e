"""The command line, run as a user runs it: real processes, a real server."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import wait_until_up

FIELDWATCH = [sys.executable, "-m", "fieldwatch"]


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*FIELDWATCH, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    return {**clean, "FIELDWATCH_DATA_DIR": str(tmp_path / "data")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_db_upgrade_users_create_and_import(env: dict[str, str], tmp_path: Path):
    out = run(env, "db", "upgrade").stdout
    from fieldwatch.db.migrate import head_revision

    assert f"Schema upgraded to {head_revision()}" in out
    assert "Schema current" in run(env, "db", "upgrade").stdout
    assert (tmp_path / "data" / "fieldwatch.db").exists()

    created = run(
        env, "users", "create", "Ops@Example.com", "--role", "operator", "--workspace", "plant-7"
    ).stdout
    assert "Created workspace 'plant-7'" in created
    assert "Created user ops@example.com as operator" in created
    password = re.search(r"Password \(shown only now\): (\S+)", created)
    assert password and len(password.group(1)) >= 16
    again = run(
        env,
        "users",
        "create",
        "ops@example.com",
        "--role",
        "admin",
        "--workspace",
        "plant-7",
        "--password",
        "another-password",
    ).stdout
    assert "now admin" in again and "password changed" in again and "Password (shown" not in again
    bad = run(env, "users", "create", "x@example.com", "--role", "root", check=False)
    assert bad.returncode != 0

    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text("name,type,serial_number\nA,meter,S-1\nB,,S-2\nC,meter,S-3\n")
    imported = run(env, "devices", "import", str(csv_file), "--workspace", "plant-7", check=False)
    assert imported.returncode == 1  # one row failed
    assert "2 created, 0 updated, 0 unchanged, 1 failed" in imported.stdout
    assert "line 3: type:" in imported.stderr
    missing = run(env, "devices", "import", str(csv_file), "--workspace", "nope", check=False)
    assert missing.returncode == 1 and "No workspace 'nope'" in missing.stderr


def test_serve_init_bootstraps_a_working_platform(env: dict[str, str], tmp_path: Path):
    port = free_port()
    proc = subprocess.Popen(
        [*FIELDWATCH, "serve", "--init", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base)
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    password = re.search(r"password:\s+(\S+)", output)
    assert "admin@example.com" in output and password, output
    assert password.group(1) not in output.split("password:")[1].split("\n", 1)[1]  # printed once

    # Second start: no new admin, nothing printed; the credentials from the first work.
    proc = subprocess.Popen(
        [*FIELDWATCH, "serve", "--init", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_up(base)
        r = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"email": "admin@example.com", "password": password.group(1)},
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        me = httpx.get(f"{base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["workspace"]["name"] == "default"
        proc.terminate()
        second = proc.communicate(timeout=15)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "First start" not in second
    assert token not in second and password.group(1) not in second  # no secrets in logs
    assert (tmp_path / "data" / "jwt_secret").stat().st_mode & 0o077 == 0


def test_serve_refuses_an_unmigrated_database(env: dict[str, str]):
    proc = run(env, "serve", "--port", str(free_port()), check=False)
    assert proc.returncode == 1 and "fieldwatch db upgrade" in proc.stderr
