"""The scaled-out topology (``fieldwatch.devtools.topology``: a scratch PostgreSQL
database, the local Redis and RabbitMQ, Mosquitto if asked for, ``db upgrade``,
``serve --role …`` processes, nginx with the shipped configuration) for the scale-out
benchmark, and what the benchmark reads of its processes: resident memory and CPU
seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator

import httpx
import psutil

from fieldwatch.db.engine import normalize_url
from fieldwatch.devtools.nginx import free_port
from fieldwatch.devtools.parts import Part
from fieldwatch.devtools.servers import Servers
from fieldwatch.devtools.topology import Layout, Topology

#: For every process: tokens that outlive a long fleet set-up, and logs for problems only.
SETTINGS = {"FIELDWATCH_ACCESS_TOKEN_TTL_S": "86400", "FIELDWATCH_LOG_LEVEL": "WARNING"}


class BenchTopology(Topology):
    """The topology, each gateway with a device listener of its own
    (``FIELDWATCH_DEVICE_WS_PORT``, ``device_ports``: gateway name → port)."""

    def __init__(self, servers: Servers, layout: Layout) -> None:
        super().__init__(servers, layout)
        self.device_ports: dict[str, int] = {}

    def add(self, role: str, name: str) -> Part:
        if role != "gateway":
            return super().add(role, name)
        port = self.device_ports.setdefault(name, free_port())
        env = {
            **self.env,
            "FIELDWATCH_DEVICE_WS_PORT": str(port),
            "FIELDWATCH_DEVICE_WS_HOST": "127.0.0.1",
        }
        part = Part(name, role, free_port(), env, self.dir / f"{name}.log").start()
        self.parts[name] = part
        return part

    def add_gateway(self, name: str) -> Part:
        """One more gateway, ready (nginx's upstreams are not rewritten: the benchmark's
        devices use the gateways' own listeners)."""
        part = self.add("gateway", name)
        asyncio.run(part.wait_ready())
        return part

    def restart(self, name: str) -> None:
        """Stop a process and start it again on the same ports, ready."""
        asyncio.run(self.parts[name].restart())

    def dsn(self) -> str:
        """The run's database, for asyncpg."""
        url = normalize_url(self.servers.database(self.database))
        return url.set(drivername="postgresql").render_as_string(False)

    def device_url(self, name: str) -> str:
        """The gateway's device listener (``ws://…``; devices add ``/ws/device/<token>``)."""
        return f"ws://127.0.0.1:{self.device_ports[name]}"

    def nginx_processes(self) -> list[psutil.Process]:
        """nginx's master and its worker(s)."""
        assert self.nginx is not None and self.nginx.proc is not None
        master = psutil.Process(self.nginx.proc.pid)
        return [master, *master.children(recursive=True)]


@contextlib.contextmanager
def topology(
    apis: int, gateways: int, workers: int = 0, mqtt: bool = False
) -> Iterator[BenchTopology]:
    """A topology with these counts of processes (addresses: ``Servers.from_env()``,
    i.e. FIELDWATCH_TOPOLOGY_*_URL), stopped and removed afterwards. Its processes run
    between the event loops that start and stop it: the benchmark's load is sync.

    No MQTT unless ``mqtt``: the benchmark's devices use WebSocket and HTTP only, and with
    Mosquitto's dynamic security every device token would also become a broker login,
    which Mosquitto 2.0 makes slower with each one (docs/scaling.md, "Mosquitto's dynamic
    security")."""
    servers = Servers.from_env()
    problems = asyncio.run(servers.unavailable())
    if problems:
        raise SystemExit("Cannot start the topology:\n  " + "\n  ".join(problems))
    layout = Layout(apis=apis, gateways=gateways, workers=workers, mqtt=mqtt, settings=SETTINGS)
    running = BenchTopology(servers, layout)
    asyncio.run(running.start())
    try:
        yield running
    finally:
        asyncio.run(running.stop())


def login(base: str, running: Topology) -> str:
    """The topology's admin's access token."""
    body = {"email": running.admin_email, "password": running.admin_password}
    r = httpx.post(f"{base}/api/v1/auth/login", json=body, timeout=30)
    r.raise_for_status()
    return str(r.json()["access_token"])


def rss(pid: int) -> int:
    """Resident memory of a process and its children, bytes."""
    proc = psutil.Process(pid)
    return sum(int(p.memory_info().rss) for p in [proc, *proc.children(recursive=True)])


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    """User + system CPU seconds so far of ``procs`` (gone ones count 0)."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total
