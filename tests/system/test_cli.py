"""The command line, run as a user runs it: real processes, a real server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import JWT_SECRET, Actor, Served, create_device, wait_until_up
from fieldwatch import __version__
from fieldwatch.core.settings import Settings
from fieldwatch.runtime import Runtime

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
    # The public address (OAuth callbacks) is the one --port chose.
    oura = {"FIELDWATCH_OURA__CLIENT_ID": "cid", "FIELDWATCH_OURA__CLIENT_SECRET": "s" * 16}
    proc = subprocess.Popen(
        [*FIELDWATCH, "serve", "--init", "--port", str(port)],
        env={**env, **oura},
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
        auth = httpx.post(f"{base}/api/v1/integrations/oura/auth", json={},
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert auth.status_code == 200, auth.text
        callback = f":{port}/api/v1/integrations/oura/callback"
        assert auth.json()["redirect_uri"].endswith(callback), auth.json()
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


# --- errors: one or two lines, never a traceback -------------------------------------


def short_error(proc: subprocess.CompletedProcess[str]) -> str:
    """A failure as the command line reports it: non-zero, at most two lines on stderr."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, proc.stderr
    return proc.stderr


def test_version(env: dict[str, str]):
    assert run(env, "--version").stdout.strip() == f"fieldwatch {__version__}"


def test_a_missing_database_is_not_created(env: dict[str, str], tmp_path: Path):
    for args in (["devices", "list"], ["users", "list"], ["tokens", "create", "S-1"]):
        message = short_error(run(env, *args, check=False))
        assert "fieldwatch db upgrade" in message, message
    serve = short_error(run(env, "serve", "--port", str(free_port()), check=False))
    assert "fieldwatch db upgrade" in serve
    assert not (tmp_path / "data").exists()


UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize("args", [["db", "upgrade"], ["devices", "list"], ["users", "list"]])
def test_an_unreachable_postgresql_is_one_message(env: dict[str, str], args: list[str]):
    env = {**env, "FIELDWATCH_DATABASE_URL": UNREACHABLE}
    message = short_error(run(env, *args, check=False))
    assert "Cannot reach the database at postgresql://nobody@127.0.0.1:1/none" in message


def test_debug_shows_the_traceback(env: dict[str, str]):
    env = {**env, "FIELDWATCH_DATABASE_URL": UNREACHABLE}
    proc = run(env, "--debug", "devices", "list", check=False)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "Cannot reach the database" in proc.stderr.strip().splitlines()[-2]


def test_bad_settings_are_one_line(env: dict[str, str]):
    message = short_error(run({**env, "FIELDWATCH_PORT": "eighty"}, "status", check=False))
    assert "FIELDWATCH_PORT" in message
    message = short_error(
        run({**env, "FIELDWATCH_DATABASE_URL": "mysql://x/y"}, "db", "upgrade", check=False)
    )
    assert "unsupported database" in message


def test_serve_on_a_port_in_use_says_so_before_anything(env: dict[str, str], tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run(env, "serve", "--init", "--port", str(port), check=False)
    message = short_error(proc)
    assert f"Cannot listen on 127.0.0.1:{port}" in message
    assert "Fieldwatch on" not in proc.stdout and "First start" not in proc.stdout
    assert not (tmp_path / "data" / "fieldwatch.db").exists()  # nothing was done


# --- operators' commands on a seeded database (both backends) -----------------------


@pytest.fixture
def db_env(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """The environment of a CLI process on the test's (migrated) database."""
    assert settings.database_url
    return {
        **env,
        "FIELDWATCH_DATABASE_URL": settings.database_url,
        "FIELDWATCH_JWT_SECRET": JWT_SECRET,
        "FIELDWATCH_ENV": "test",
    }


async def seed(client: httpx.AsyncClient, admin: Actor) -> list[dict[str, object]]:
    return [
        await create_device(client, admin, name="Boiler 1", type="meter", serial_number="M-1",
                            location="Plant A", specs={"range": [0, 10]}),
        await create_device(client, admin, name="Boiler, 2", type="meter", serial_number="M-2"),
        await create_device(client, admin, name="Gate", type="sensor", serial_number="G-1",
                            capabilities=["temp", "door"], location="Plant A"),
    ]  # fmt: skip


async def test_devices_list_table_json_and_filters(
    db_env: dict[str, str], client: httpx.AsyncClient, admin: Actor
):
    devices = await seed(client, admin)
    out = run(db_env, "devices", "list", "--workspace", admin.workspace)
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "NAME",
        "TYPE",
        "SERIAL",
        "STATUS",
        "LOCATION",
        "LAST",
        "SEEN",
    ]
    assert [line.split()[0] for line in lines[2:]] == [str(d["id"]) for d in devices]  # by name
    assert "3 of 3 device(s)" in out.stderr
    listed = json.loads(
        run(db_env, "devices", "list", "--workspace", admin.workspace, "--json").stdout
    )
    assert listed["total"] == 3 and listed["items"][0]["serial_number"] == "M-1"

    def names(*flags: str) -> list[str]:
        body = run(db_env, "devices", "list", "--workspace", admin.workspace, "--json", *flags)
        return [d["name"] for d in json.loads(body.stdout)["items"]]

    assert names("--type", "sensor") == ["Gate"]
    assert names("--location", "Plant A", "--limit", "1") == ["Boiler 1"]
    assert names("--search", "m-2") == ["Boiler, 2"]
    assert names("--status", "in_stock", "--status", "retired") == ["Boiler 1", "Boiler, 2", "Gate"]
    assert names("--status", "deployed") == []
    assert names("--connectivity", "offline") == ["Boiler 1", "Boiler, 2", "Gate"]  # never seen
    assert names("--connectivity", "online") == []
    bad = run(db_env, "devices", "list", "--status", "lost", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    short_error(run(db_env, "devices", "list", "--workspace", "nowhere", check=False))


async def test_devices_export_is_the_apis_csv(
    db_env: dict[str, str], client: httpx.AsyncClient, admin: Actor, tmp_path: Path
):
    await seed(client, admin)
    api = await client.get("/api/v1/devices/export", headers=admin.headers)
    assert api.status_code == 200
    exported = run(db_env, "devices", "export", "--workspace", admin.workspace)
    assert exported.stdout == api.text
    target = tmp_path / "fleet.csv"
    run(
        db_env,
        "devices",
        "export",
        "--workspace",
        admin.workspace,
        "--type",
        "meter",
        "-o",
        str(target),
    )
    only = await client.get("/api/v1/devices/export?type=meter", headers=admin.headers)
    assert target.read_text(encoding="utf-8") == only.text
    assert len(only.text.splitlines()) == 3


async def test_tokens_create_work_and_revoke_stops_them(
    db_env: dict[str, str], client: httpx.AsyncClient, admin: Actor, runtime: Runtime
):
    device = (await seed(client, admin))[0]
    created = run(
        db_env, "tokens", "create", "M-1", "--workspace", admin.workspace, "--name", "cli"
    )
    token = created.stdout.strip()
    assert token.startswith("fwd_") and len(created.stdout.splitlines()) == 1
    headers = {"Authorization": f"Bearer {token}"}
    me = await client.get("/api/v1/device/me", headers=headers)
    assert me.status_code == 200 and me.json()["device_id"] == device["id"]
    token_id = me.json()["token_id"]
    listed = run(db_env, "tokens", "list", str(device["id"]), "--workspace", admin.workspace)
    assert token_id in listed.stdout and token not in listed.stdout

    run(db_env, "tokens", "revoke", str(device["id"]), token_id, "--workspace", admin.workspace)
    runtime.forget_credentials()  # what the event bus tells a server of another process
    assert (await client.get("/api/v1/device/me", headers=headers)).status_code == 401
    missing = run(db_env, "tokens", "create", "nope", "--workspace", admin.workspace, check=False)
    assert "No device with id or serial number 'nope'" in short_error(missing)


async def test_users_list(db_env: dict[str, str], admin: Actor):
    run(
        db_env,
        "users",
        "create",
        "ops@example.com",
        "--role",
        "operator",
        "--workspace",
        admin.workspace,
    )
    out = run(db_env, "users", "list", "--workspace", admin.workspace).stdout
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
    assert rows == {admin.email: "admin", "ops@example.com": "operator"}
    members = json.loads(
        run(db_env, "users", "list", "--workspace", admin.workspace, "--json").stdout
    )
    assert {m["email"]: m["role"] for m in members} == rows


# --- status: asks a running server --------------------------------------------------


async def run_async(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``run`` without blocking the event loop (the server under test runs in it)."""
    proc = await asyncio.create_subprocess_exec(
        *FIELDWATCH, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_of_a_running_server_and_of_none(env: dict[str, str], served: Served):
    port = served.base_url.rsplit(":", 1)[1]
    # The default address is where `serve` listens; an any-address bind is asked on loopback.
    any_address = {**env, "FIELDWATCH_HOST": "0.0.0.0", "FIELDWATCH_PORT": port}  # noqa: S104
    code, out, err = await run_async(any_address, "status")
    assert code == 0, out + err
    assert f"at http://127.0.0.1:{port}: ok" in out
    assert re.search(r"^  database +ok ", out, re.M), out
    assert re.search(r"^  devices +online: 0$", out, re.M), out  # from the server's /metrics
    code, out, _ = await run_async(env, "status", "--url", served.base_url, "--json")
    assert code == 0 and json.loads(out)["status"] == "ok"
    assert json.loads(out)["devices_online"] == 0

    code, out, err = await run_async(env, "status", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and out == "" and "Traceback" not in err
    assert (
        "Cannot reach Fieldwatch at http://127.0.0.1:" in err and len(err.strip().splitlines()) == 2
    )
