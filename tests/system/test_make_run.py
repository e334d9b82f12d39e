"""``make run`` listens where the settings say, as ``fieldwatch serve`` does."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "Makefile").exists())
VENV = Path(sys.prefix)
MAKE = shutil.which("make") or "make"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_run(tmp_path: Path, env_port: int, *overrides: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    env |= {
        "FIELDWATCH_DATA_DIR": str(tmp_path / "data"),
        "FIELDWATCH_PORT": str(env_port),
        "FIELDWATCH_MQTT_EMBEDDED": "false",
        "PORT": "1",  # a stray PORT in the environment must not count
    }
    # The interpreter running the tests is the project's environment: make uses it as it
    # is (-o: never reinstall it from here).
    stamp = VENV / ".installed"
    return subprocess.Popen(
        [MAKE, "-s", "-C", str(ROOT), "run", f"VENV={VENV}", "-o", str(stamp), *overrides],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _answers(port: int) -> bool:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            time.sleep(0.3)
    return False


@pytest.mark.parametrize("on_command_line", [False, True])
def test_make_run_listens_where_the_settings_or_the_command_line_say(tmp_path, on_command_line):
    if not (VENV / "bin" / "fieldwatch").exists():
        pytest.fail(f"the project is not installed in {VENV}")
    env_port, cli_port = _free_port(), _free_port()
    expected = cli_port if on_command_line else env_port
    overrides = [f"PORT={cli_port}"] if on_command_line else []
    proc = _make_run(tmp_path, env_port, *overrides)
    try:
        assert _answers(expected)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
