"""The fleet simulator's side of the REST API: signing in (an API key, or an email and a
password), its devices (serials ``SIM-00000…``) and their agent tokens, self-registration
with a provisioning key, and reading back the readings the API shows.

Everything goes through the API of the server at ``server``: the simulator is a client
of the platform like any other, and drives a server anywhere by its URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx

SERIAL_PREFIX = "SIM-"
TOKEN_NAME = "simulator"
DEVICE_TYPE = "simulated"
CAPABILITIES = ["temperature", "humidity", "battery_monitoring"]
#: The firmware a simulated device starts with.
FIRST_VERSION = "1.0.0"
#: Requests the simulator has in flight at once while it prepares its fleet.
CONCURRENCY = 8
T = TypeVar("T")


class Unreachable(Exception):
    """No answer from ``url`` (refused, unknown host, timed out…)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")


class Refused(Exception):
    """The server answered, and said no (the message says why)."""


def connect_failure(exc: BaseException) -> str:
    """A short reason for a failed connection: the first cause that names one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, TimeoutError | httpx.TimeoutException):
            return "timed out"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def problem(r: httpx.Response) -> str:
    """What an error response says: the problem document's detail, else its text."""
    try:
        body = r.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"{r.status_code} {detail if isinstance(detail, str) else r.text[:200]}"


@dataclass
class Credentials:
    api_key: str | None = None
    email: str | None = None
    password: str | None = None
    workspace: str | None = None  # sent as X-Workspace (name or id)

    @property
    def given(self) -> bool:
        return bool(self.api_key or (self.email and self.password))


@dataclass
class SimDevice:
    device_id: str
    serial: str
    token: str
    firmware_version: str = FIRST_VERSION


def serials(count: int) -> list[str]:
    return [f"{SERIAL_PREFIX}{i:05d}" for i in range(count)]


def device_fields(serial: str) -> dict[str, Any]:
    number = int(serial.removeprefix(SERIAL_PREFIX))
    return {"name": f"Simulated sensor {number}", "type": DEVICE_TYPE,
            "capabilities": CAPABILITIES, "firmware_version": FIRST_VERSION}  # fmt: skip


async def bounded(items: Sequence[T], work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    """``work`` on every item, ``CONCURRENCY`` at a time, results in the items' order."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> Any:
        async with gate:
            return await work(item)

    try:  # the first failure cancels the rest
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


class Platform:
    """One signed-in API client; ``request`` turns connection failures into
    ``Unreachable`` and error answers into ``Refused``."""

    def __init__(self, server: str, *, timeout_s: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.server, timeout=timeout_s)
        self.workspace: str | None = None
        self._refresh: str | None = None

    async def close(self) -> None:
        if self._refresh is not None:  # end the login the simulator opened
            with contextlib.suppress(Unreachable, Refused):
                await self.request("POST", "/api/v1/auth/logout", ok=(204,))
            self._refresh = None
        await self.http.aclose()

    async def request(
        self, method: str, path: str, *, ok: Sequence[int] = (200,), **kwargs: Any
    ) -> httpx.Response:
        try:
            r = await self.http.request(method, path, **kwargs)
            if r.status_code == 401 and self._refresh is not None and "headers" not in kwargs:
                await self._renew()  # the access token expired: a new one, once
                r = await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self.server, connect_failure(exc)) from None
        if r.status_code not in ok:
            raise Refused(f"{method} {path}: {problem(r)}")
        return r

    async def _renew(self) -> None:
        body = {"refresh_token": self._refresh}
        r = await self.http.post("/api/v1/auth/refresh", json=body)
        if r.status_code == 200:
            self._use(r.json())

    def _use(self, pair: dict[str, Any]) -> None:
        self.http.headers["Authorization"] = f"Bearer {pair['access_token']}"
        self._refresh = pair["refresh_token"]

    async def sign_in(self, creds: Credentials) -> str:
        """Sign in with an API key or a login; returns the workspace's name."""
        if creds.workspace:
            self.http.headers["X-Workspace"] = creds.workspace
        if creds.api_key:
            self.http.headers["Authorization"] = f"Bearer {creds.api_key}"
        else:
            login = {"email": creds.email, "password": creds.password}
            r = await self.request("POST", "/api/v1/auth/login", json=login, ok=(200, 401, 404))
            self._check_fieldwatch(r, "/api/v1/auth/login")
            if r.status_code == 401:
                raise Refused(f"the login was refused: {problem(r)}")
            self._use(r.json())
        r = await self.request("GET", "/api/v1/auth/me", ok=(200, 401, 403, 404))
        self._check_fieldwatch(r, "/api/v1/auth/me")
        if r.status_code != 200:
            raise Refused(f"the server refused the credentials: {problem(r)}")
        workspace = r.json().get("workspace") or {}
        self.workspace = str(workspace.get("name") or "?")
        return self.workspace

    def _check_fieldwatch(self, r: httpx.Response, path: str) -> None:
        if r.status_code == 404 and "application/problem+json" not in r.headers.get(
            "content-type", ""
        ):
            raise Refused(f"{self.server} does not look like a Fieldwatch server (404 on {path})")

    # --- the fleet ----------------------------------------------------------------------

    async def fleet(self, count: int) -> list[SimDevice]:
        """The devices ``SIM-00000…`` (created where missing), each with a fresh agent
        token; the tokens earlier runs issued to them are revoked."""
        known = await self._known_devices()
        return await bounded(serials(count), lambda serial: self._prepare(serial, known))

    async def _every(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list (``{items, total, limit, offset}``), page after page."""
        offset = 0
        while True:
            query = {**params, "limit": 500, "offset": offset}
            page = (await self.request("GET", path, params=query)).json()
            for item in page["items"]:
                yield item
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    async def _known_devices(self) -> dict[str, tuple[str, str]]:
        """serial -> (device id, firmware version)"""
        found: dict[str, tuple[str, str]] = {}
        params = {"q": SERIAL_PREFIX, "sort": "created_at"}
        async for device in self._every("/api/v1/devices", params):
            serial = device.get("serial_number") or ""
            if serial.startswith(SERIAL_PREFIX):
                found[serial] = (device["id"], device.get("firmware_version") or FIRST_VERSION)
        return found

    async def _prepare(self, serial: str, known: dict[str, tuple[str, str]]) -> SimDevice:
        device_id, version = known.get(serial, (None, FIRST_VERSION))
        if device_id is None:
            body = {"serial_number": serial, **device_fields(serial)}
            created = await self.request("POST", "/api/v1/devices", json=body, ok=(201,))
            device_id = str(created.json()["id"])
        tokens = f"/api/v1/devices/{device_id}/tokens"
        stale = [t["id"] async for t in self._every(tokens, {})
                 if t["name"] == TOKEN_NAME and t["revoked_at"] is None]  # fmt: skip
        for token_id in stale:
            await self.request("DELETE", f"{tokens}/{token_id}")
        try:
            issued = await self.request("POST", tokens, json={"name": TOKEN_NAME}, ok=(201,))
        except Refused as exc:
            raise Refused(f"{serial}: {exc}") from None
        return SimDevice(device_id, serial, str(issued.json()["token"]), version)

    async def provision(self, key: str, count: int) -> list[SimDevice]:
        """The devices register themselves with a provisioning key (a known serial gets
        a new token and its earlier ones are revoked)."""

        async def register(serial: str) -> SimDevice:
            body = {"serial_number": serial, **device_fields(serial)}
            headers = {"Authorization": f"Bearer {key}"}
            r = await self.request(
                "POST", "/api/v1/provision", json=body, headers=headers, ok=(200, 201, 401, 404)
            )
            self._check_fieldwatch(r, "/api/v1/provision")
            if r.status_code == 401:
                raise Refused(f"the provisioning key was refused: {problem(r)}")
            answer = r.json()
            return SimDevice(str(answer["device_id"]), serial, str(answer["auth_token"]))

        return await bounded(serials(count), register)

    async def update_outcome(self, update_id: str) -> tuple[str, str | None] | None:
        """``("completed", None)``, or ``("failed", reason)`` (the server's reason, else
        the state: ``expired``, ``cancelled``), once the server has finished the update;
        else None."""
        path = f"/api/v1/firmware/updates/{update_id}"
        r = await self.request("GET", path, ok=(200, 404))
        body = r.json() if r.status_code == 200 else {}
        state = body.get("state")
        if state in ("failed", "expired", "cancelled"):
            return "failed", str(body.get("reason") or state)
        return ("completed", None) if state == "completed" else None

    # --- reading back -------------------------------------------------------------------

    async def readings(self, since: datetime) -> AsyncIterator[tuple[str, str, datetime]]:
        """``(device id, metric, timestamp)`` of the stored readings of the workspace's
        simulated devices from ``since`` on, oldest first."""
        params: dict[str, Any] = {"type": DEVICE_TYPE, "start_time": since.isoformat(),
                                  "order": "asc", "limit": 10000}  # fmt: skip
        while True:
            body = (await self.request("GET", "/api/v1/monitoring/data", params=params)).json()
            for item in body["items"]:
                yield (
                    item["device_id"],
                    item["data_type"],
                    datetime.fromisoformat(item["timestamp"]),
                )
            if not body.get("next_cursor"):
                return
            params["cursor"] = body["next_cursor"]
