"""Take the README's console screenshots from a real, fresh installation.

Starts ``fieldwatch serve --init`` in a temporary data directory on a free port, signs in
with the admin password it prints, runs the simulator for a while (so devices appear and
their charts move), moves a few devices through their lifecycle over the API, uploads a
firmware for the simulated devices and starts a rollout of it to the deployed ones
(they take it), connects an account of the test suite's Oura stand-in (served here on
loopback) and syncs its ring, then opens the console in headless Chromium and saves the
overview, inventory, device, rollout, integrations and sync history pages as PNG files
under ``docs/screenshots/``.

    .venv/bin/python scripts/screenshots.py [--seconds 60] [--devices 12] [--only integrations]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from playwright.async_api import Page, async_playwright, expect

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/lib/chromium/chromium-headless-shell"
OUT = ROOT / "docs" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path, port: int, extra: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    env |= {"FIELDWATCH_DATA_DIR": str(data), "FIELDWATCH_MQTT_EMBEDDED": "false", **extra}
    server = subprocess.Popen(
        [str(BIN / "fieldwatch"), "serve", "--init", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert server.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        found = re.search(r"password:\s+(\S+)", line)
        if found:
            return server, found.group(1)
    server.kill()
    raise SystemExit("the server did not print the admin password")


def wait_up(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not become ready")


@contextlib.contextmanager
def signed_in(base: str, password: str) -> Iterator[httpx.Client]:
    """An API client signed in as the admin."""
    with httpx.Client(base_url=base + "/api/v1", timeout=10) as http:
        r = http.post("/auth/login", json={"email": "admin@example.com", "password": password})
        r.raise_for_status()
        http.headers["Authorization"] = "Bearer " + r.json()["access_token"]
        yield http


def shape_the_fleet(base: str, password: str) -> str:
    """Deploy, reserve and service a few of the simulator's devices; the id of one
    deployed device (the device page's screenshot)."""
    with signed_in(base, password) as http:
        query = {"limit": 100, "sort": "name", "type": "simulated"}  # not the ring
        devices = http.get("/devices", params=query).json()["items"]
        sites = ["Plant A · Line 1", "Plant A · Line 2", "Cold store B", "Roof C"]
        for i, device in enumerate(devices[:8]):
            body = {"location": sites[i % len(sites)], "notes": "installed"}
            http.put(f"/devices/{device['id']}/deploy", json=body).raise_for_status()
        if len(devices) > 9:
            http.put(f"/devices/{devices[8]['id']}/reserve", json={}).raise_for_status()
            http.put(
                f"/devices/{devices[9]['id']}/maintenance", json={"notes": "battery swap"}
            ).raise_for_status()
        return str(devices[0]["id"])


def start_a_rollout(base: str, password: str) -> str:
    """Firmware 1.1.0 for the simulated devices, rolled out to the deployed ones: a
    canary, then half of the rest, then the others, soaking 30 s after each wave; its id."""
    with signed_in(base, password) as http:
        files = {"file": ("sim-1.1.0.bin", os.urandom(256 * 1024), "application/octet-stream")}
        form = {"version": "1.1.0", "device_types": "simulated", "notes": "faster sampling"}
        r = http.post("/firmware/artifacts", data=form, files=files)
        r.raise_for_status()
        body = {"name": "1.1.0 to the field", "artifact_id": r.json()["id"],
                "target": {"filter": {"type": "simulated", "status": ["deployed"]}},
                "canary": 1, "percentages": [50, 100], "soak_s": 30, "failure_threshold": 0.2,
                "min_finished": 2, "rate_per_minute": 30}  # fmt: skip
        r = http.post("/firmware/rollouts", json=body)
        r.raise_for_status()
        rollout_id = str(r.json()["id"])
        http.post(f"/firmware/rollouts/{rollout_id}/start").raise_for_status()
        return rollout_id


@contextlib.contextmanager
def oura_standin() -> Iterator[tuple[Any, str]]:
    """The test suite's Oura stand-in (tests/standins) served on loopback in a thread:
    the vendor's state (to script a fault) and its base URL."""
    sys.path.insert(0, str(ROOT / "tests"))
    from standins.oura import oura_app
    from standins.vendor import Vendor

    vendor = Vendor(users=["ring-wearer"])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(oura_app(vendor), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield vendor, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def oura_settings(vendor: Any, standin: str) -> dict[str, str]:
    """The server's registration with the stand-in."""
    return {"FIELDWATCH_OURA__CLIENT_ID": vendor.client_id,
            "FIELDWATCH_OURA__CLIENT_SECRET": vendor.client_secret,
            "FIELDWATCH_OURA__AUTH_URL": standin, "FIELDWATCH_OURA__API_URL": standin}  # fmt: skip


def sync_a_ring(base: str, password: str, vendor: Any) -> None:
    """Connect the stand-in's account (its consent page sends the browser back to the
    server), import its ring, let the engine backfill three days; then a manual sync
    that the vendor fails (HTTP 503), which waits for its retry."""
    with signed_in(base, password) as http:
        started = http.post("/integrations/oura/auth", json={})
        started.raise_for_status()
        consented = httpx.get(started.json()["authorization_url"])  # the vendor's page
        back = httpx.URL(consented.headers["location"])
        connection = http.get(back.path.removeprefix("/api/v1"), params=back.params)
        connection.raise_for_status()
        connection_id = connection.json()["id"]
        rings = http.get("/integrations/oura/devices", params={"connection_id": connection_id})
        body = {"connection_id": connection_id,
                "devices": [rings.json()["items"][0]["vendor_device_id"]],
                "sync_settings": {"sync_historical_days": 3}}  # fmt: skip
        http.post("/integrations/oura/import", json=body).raise_for_status()
        device_id = wait_for_sync(http, "ok")
        vendor.fail("/v2/usercollection/heartrate", 503, times=20)
        http.post(f"/devices/{device_id}/sync").raise_for_status()
        wait_for_sync(http, "error")


def wait_for_sync(http: httpx.Client, status: str) -> str:
    """The synced device once its sync status is ``status`` (the engine ticks every 5 s)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        items = http.get("/sync/status").json()["items"]
        if items and items[0]["sync_status"] == status:
            return str(items[0]["device_id"])
        time.sleep(1)
    raise SystemExit(f"the ring's sync did not become {status}")


async def sign_in(page: Page, base: str, password: str) -> None:
    await page.goto(base + "/console/login")
    await page.get_by_label("E-mail").fill("admin@example.com")
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#live")).to_have_text("Live", timeout=10_000)


async def shoot_fleet(page: Page, base: str, device_id: str, rollout_id: str) -> list[str]:
    await page.wait_for_timeout(1500)
    await page.screenshot(path=OUT / "overview.png", full_page=True)
    await page.goto(base + "/console/inventory")
    await page.wait_for_timeout(1500)
    await page.screenshot(path=OUT / "inventory.png", full_page=True)
    await page.goto(base + f"/console/devices/{device_id}")
    await page.wait_for_timeout(4000)  # the charts draw and take live readings
    clip = {"x": 0, "y": 0, "width": 1280, "height": 1700}  # identity to the charts
    await page.screenshot(path=OUT / "device.png", full_page=True, clip=clip)
    await page.goto(base + f"/console/firmware/rollouts/{rollout_id}")
    await expect(page.locator("#live")).to_have_text("Live", timeout=10_000)
    await page.wait_for_timeout(1500)
    await page.screenshot(path=OUT / "rollout.png", full_page=True)
    return ["overview", "inventory", "device", "rollout"]


async def shoot_integrations(page: Page, base: str) -> list[str]:
    await page.goto(base + "/console/integrations")
    await page.wait_for_timeout(500)
    await page.screenshot(path=OUT / "integrations.png", full_page=True)
    await page.goto(base + "/console/integrations/sync")
    await expect(page.locator("#live")).to_have_text("Live", timeout=10_000)
    await page.wait_for_timeout(1000)
    await page.screenshot(path=OUT / "sync-history.png", full_page=True)
    return ["integrations", "sync-history"]


async def shoot(base: str, password: str, fleet: tuple[str, str] | None) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await sign_in(page, base, password)
        saved = await shoot_fleet(page, base, *fleet) if fleet else []
        saved += await shoot_integrations(page, base)
        await browser.close()
    for name in saved:
        print(f"saved {OUT / (name + '.png')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="simulator run time")
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--only", choices=["integrations"], help="only these pages")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp, oura_standin() as (vendor, standin):
        extra = {"FIELDWATCH_PUBLIC_URL": base, **oura_settings(vendor, standin)}
        server, password = start_server(Path(tmp) / "data", port, extra)
        try:
            wait_up(base)
            sync_a_ring(base, password, vendor)
            if args.only:
                asyncio.run(shoot(base, password, None))
                return
            env = os.environ | {"FIELDWATCH_PASSWORD": password}
            sim = subprocess.Popen(
                [str(BIN / "fieldwatch"), "simulate", "--server", base, "--email",
                 "admin@example.com", "--devices", str(args.devices), "--interval", "1"],
                env=env, stdout=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            try:
                time.sleep(min(10.0, args.seconds))
                device_id = shape_the_fleet(base, password)
                rollout_id = start_a_rollout(base, password)
                time.sleep(max(0.0, args.seconds - 10))
                asyncio.run(shoot(base, password, (device_id, rollout_id)))
            finally:
                os.killpg(sim.pid, signal.SIGINT)
                sim.wait(timeout=30)
        finally:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
