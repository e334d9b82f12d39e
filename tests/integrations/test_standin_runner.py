"""``make standin``: each vendor's stand-in served by ``tests/standins/run.py`` in a process
of its own, and Fieldwatch, given the settings it prints, connects an account through it
(OAuth with PKCE, the account's id read from the vendor's API)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Actor
from fieldwatch.core.settings import Settings, VendorApp
from integration_helpers import connect
from mqtt_helpers import free_port

RUNNER = Path(__file__).resolve().parents[1] / "standins" / "run.py"
FIELDS = {"CLIENT_ID", "CLIENT_SECRET", "AUTH_URL", "API_URL", "TOKEN_URL", "WEBHOOK_KEYSET_URL"}


@pytest.fixture
def standin(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The runner serving ``request.param``; what it printed, and its settings file."""
    port, env_file = free_port(), tmp_path / "standin.env"
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), request.param, "--port", str(port), "--env-file",
         str(env_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the stand-in did not start")
        pairs = (
            line.removeprefix("export ").split("=", 1)
            for line in env_file.read_text().split("\n")
            if line
        )
        yield request.param, dict(pairs)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("standin", ["oura", "withings", "google_health", "garmin"], indirect=True)
async def test_fieldwatch_connects_through_a_served_standin(
    standin: tuple[str, dict[str, str]], settings: Settings, client: httpx.AsyncClient,
    operator: Actor,
) -> None:  # fmt: skip
    kind, env = standin
    prefix = f"FIELDWATCH_{kind.upper()}__"
    assert all(k.startswith(prefix) and k.removeprefix(prefix) in FIELDS for k in env)
    assert env[f"{prefix}API_URL"].startswith("http://127.0.0.1:")
    setattr(
        settings, kind, VendorApp(**{k.removeprefix(prefix).lower(): v for k, v in env.items()})
    )

    made = await connect(client, operator, kind)
    assert made.status_code == 200, made.text
    body = made.json()
    assert (body["connector"], body["status"]) == (kind, "active")
    assert body["external_user_id"]  # read from the stand-in's API with the token it gave
