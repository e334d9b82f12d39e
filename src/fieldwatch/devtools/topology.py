"""The scaled-out installation of ``deploy/compose/compose.yaml`` as processes on this
machine, for ``make topology`` and ``tests/deploy/test_topology.py``.

What compose runs as containers runs here as processes on loopback ports, over the
PostgreSQL, Redis and RabbitMQ of this machine (``devtools.servers``): a Mosquitto with
dynamic security started for the run, the one-shot ``fieldwatch db upgrade`` (the
``migrate`` service) before anything else, the admin account, two ``serve --role api``
processes, one ``--role gateway``, one ``--role worker`` (each count configurable), and
nginx in front with the shipped ``deploy/nginx/fieldwatch.conf`` as it is; only its
upstreams file is written, with the loopback ports (``upstreams.compose.conf`` names the
compose services instead). Every process gets the environment compose gives it
(production mode, random secrets, a shared data directory, firmware downloads handed to
nginx).

    async with Topology(Servers.from_env(), Layout(apis=2, workers=1)) as topology:
        topology.url            # nginx: the only address clients need
        topology.parts          # name → Part (api-1, api-2, gateway-1, worker-1)
        topology.admin_email, topology.admin_password

Each run has a database (``fw_topo_<id>``), a Redis key prefix and a RabbitMQ exchange of
its own; stopping removes them, with the processes and the temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fieldwatch.devtools.mosquitto import Mosquitto
from fieldwatch.devtools.nginx import Nginx, free_port
from fieldwatch.devtools.parts import FIELDWATCH, Part, PartFailed
from fieldwatch.devtools.servers import Servers

log = logging.getLogger(__name__)

ADMIN_EMAIL = "admin@example.com"
WORKSPACE = "default"
#: What compose's upstreams say of each server (``upstreams.compose.conf``).
SERVER_OPTIONS = "max_fails=2 fail_timeout=5s"
GENERATED_PASSWORD = re.compile(r"Password \(shown only now\): (\S+)")


@dataclass
class Layout:
    """How many processes of each role, nginx's port (default: a free one), whether there
    is MQTT (``mqtt=False``: no Mosquitto, and processes without MQTT — for devices that
    use WebSocket or HTTP only, whose tokens then need no broker login), and further
    ``FIELDWATCH_*`` settings for every process (e.g. a faster presence sweep)."""

    apis: int = 2
    gateways: int = 1
    workers: int = 1
    port: int | None = None
    mqtt: bool = True
    settings: Mapping[str, str] = field(default_factory=dict)


class Topology:
    def __init__(self, servers: Servers | None = None, layout: Layout | None = None) -> None:
        self.servers = servers or Servers.from_env()
        self.layout = layout or Layout()
        self.run_id = secrets.token_hex(4)
        self.database = f"fw_topo_{self.run_id}"
        self.redis_prefix = f"fw-topo-{self.run_id}"
        self.exchange = f"fieldwatch.topology.{self.run_id}"
        self.port = self.layout.port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"fw-topology-{self.run_id}-"))
        self.dir.chmod(0o755)  # nginx's workers read the firmware files below it
        self.firmware_dir = self.dir / "data" / "firmware"
        self.admin_email = ADMIN_EMAIL
        self.admin_password = ""
        self.broker: Mosquitto | None = None
        self.nginx: Nginx | None = None
        self.parts: dict[str, Part] = {}
        self.env: dict[str, str] = {}
        self._made: list[str] = []  # what stop() removes: "database", "shared"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def role(self, role: str) -> list[Part]:
        return [part for part in self.parts.values() if part.role == role]

    # --- start and stop -----------------------------------------------------------------

    async def start(self) -> Topology:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        await self.servers.create_database(self.database)
        self._made += ["database", "shared"]
        if self.layout.mqtt:
            self.broker = await asyncio.to_thread(Mosquitto(dynsec=True).start)
        self.env = self._environment(self.broker)
        await self.cli("db", "upgrade")  # compose's one-shot `migrate`, before the others
        self.admin_password = await self._admin()
        roles = {"api": self.layout.apis, "gateway": self.layout.gateways,
                 "worker": self.layout.workers}  # fmt: skip
        for role, count in roles.items():
            for i in range(1, count + 1):
                self.add(role, f"{role}-{i}")
        await asyncio.gather(*(part.wait_ready() for part in self.parts.values()))
        self.nginx = Nginx(firmware_dir=self.firmware_dir, upstreams=self.upstreams(),
                           port=self.port)  # fmt: skip
        await asyncio.to_thread(self.nginx.start)
        await self._wait_for_nginx()

    def add(self, role: str, name: str) -> Part:
        """Start one more process of ``role`` (not behind nginx until ``upstreams`` is
        written again: extra workers need no nginx)."""
        log_file = self.dir / f"{name}.log"
        part = Part(name, role, free_port(), self.env, log_file).start()
        self.parts[name] = part
        return part

    async def stop(self) -> None:
        """Stop everything and remove what the run made; each step runs even if one
        before it failed."""
        if self.nginx is not None:
            await asyncio.to_thread(self.nginx.stop)
        await asyncio.gather(*(part.stop() for part in self.parts.values()))
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        if "database" in self._made:
            with _logged("dropping the database"):
                await self.servers.drop_database(self.database)
        if "shared" in self._made:
            with _logged("removing the Redis keys and the RabbitMQ exchange"):
                await self.servers.forget(self.redis_prefix, self.exchange)
        self._made.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def __aenter__(self) -> Topology:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the pieces -----------------------------------------------------------------------

    def _environment(self, broker: Mosquitto | None) -> dict[str, str]:
        """What compose.yaml's ``x-fieldwatch`` environment gives every process (without
        a broker: no MQTT at all, neither an external nor the embedded one)."""
        self.firmware_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.firmware_dir.parent, self.firmware_dir):
            path.chmod(0o755)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
        return {
            **inherited,
            "FIELDWATCH_ENV": "production",
            "FIELDWATCH_DATABASE_URL": self.servers.database(self.database),
            "FIELDWATCH_DB_POOL_SIZE": "5",  # a shared development server: few connections
            "FIELDWATCH_REDIS_URL": self.servers.redis_url,
            "FIELDWATCH_REDIS_PREFIX": self.redis_prefix,
            "FIELDWATCH_RABBITMQ_URL": self.servers.rabbitmq_url,
            "FIELDWATCH_RABBITMQ_EXCHANGE": self.exchange,
            **_mqtt_environment(broker),
            "FIELDWATCH_JWT_SECRET": secrets.token_urlsafe(32),
            "FIELDWATCH_ENCRYPTION_KEY": secrets.token_urlsafe(32),
            "FIELDWATCH_PUBLIC_URL": self.url,
            "FIELDWATCH_DATA_DIR": str(self.firmware_dir.parent),
            "FIELDWATCH_FIRMWARE_DIR": str(self.firmware_dir),
            "FIELDWATCH_FIRMWARE_ACCEL_REDIRECT_PREFIX": "/_firmware/",
            **self.layout.settings,
        }

    async def cli(self, *args: str) -> str:
        """``fieldwatch <args>`` with the processes' environment; its output."""
        done = await asyncio.to_thread(
            subprocess.run, [*FIELDWATCH, *args], env=self.env, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise PartFailed(f"fieldwatch {args[0]} {args[1]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    async def _admin(self) -> str:
        """The admin account; its generated password (never on a command line)."""
        out = await self.cli("users", "create", self.admin_email, "--role", "admin",
                             "--workspace", WORKSPACE)  # fmt: skip
        found = GENERATED_PASSWORD.search(out)
        if found is None:
            raise PartFailed("`fieldwatch users create` printed no generated password")
        return found.group(1)

    def upstreams(self) -> dict[str, list[str]]:
        """The upstreams file's servers: the loopback ports of the api and gateway
        processes (Socket.IO goes to the api processes, by client address)."""
        apis = [f"127.0.0.1:{p.port} {SERVER_OPTIONS}" for p in self.role("api")]
        gateways = [f"127.0.0.1:{p.port} {SERVER_OPTIONS}" for p in self.role("gateway")]
        return {"fieldwatch_api": apis, "fieldwatch_realtime": apis,
                "fieldwatch_gateway": gateways}  # fmt: skip

    async def _wait_for_nginx(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            for _ in range(50):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        assert self.nginx is not None
        raise PartFailed(f"nginx does not reach the api processes:\n{self.nginx.errors()}")

    def summary(self) -> str:
        """What a person needs to use the running topology."""
        assert self.nginx is not None
        if self.broker is None:
            mqtt = ["               no MQTT in this layout (started with --no-mqtt)"]
        else:
            mqtt = [f"               mqtt://127.0.0.1:{self.broker.port} (Mosquitto, dynamic "
                    "security: a device logs in with its id and token)"]  # fmt: skip
        lines = [
            f"Fieldwatch behind nginx on {self.url}",
            f"  console      {self.url}/console/",
            f"  API docs     {self.url}/docs",
            f"  devices      ws://127.0.0.1:{self.port}/ws/device (WebSocket, through nginx)",
            *mqtt,
            f"  sign in      {self.admin_email} / {self.admin_password} (workspace {WORKSPACE})",
            "",
            "Processes (each also on its own port):",
        ]
        lines += [f"  {p.name:<10} {p.url}  log: {p.log}" for p in self.parts.values()]
        lines.append(f"  {'nginx':<10} {self.url}  config: {self.nginx.dir}")
        if self.broker is not None:
            broker = self.broker
            lines.append(f"  {'mosquitto':<10} port {broker.port}  admin: "
                         f"{broker.admin_username} / {broker.admin_password}")  # fmt: skip
        lines += [
            "",
            f"Run {self.run_id}: database {self.database}, Redis keys {self.redis_prefix}:*, "
            f"RabbitMQ exchange {self.exchange} (all removed on exit).",
        ]
        return "\n".join(lines)


def _mqtt_environment(broker: Mosquitto | None) -> dict[str, str]:
    if broker is None:
        return {"FIELDWATCH_MQTT_EMBEDDED": "false", "FIELDWATCH_MQTT_DYNSEC": "false"}
    return {"FIELDWATCH_MQTT_URL": broker.admin_url, "FIELDWATCH_MQTT_EMBEDDED": "false",
            "FIELDWATCH_MQTT_DYNSEC": "true"}  # fmt: skip


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """Clean-up steps go on after one fails; the failure is logged."""
    try:
        yield
    except Exception:
        log.exception("topology clean-up: %s failed", what)
