"""``fieldwatch simulate``: a fleet of virtual devices against a running server.

The command is a client of the platform only: it signs in to the API (an API key, or an
email and a password) and prepares its devices through it, or lets them register
themselves with a provisioning key; it never opens the database. Its defaults follow
the settings ``fieldwatch serve`` uses (FIELDWATCH_HOST, FIELDWATCH_PORT,
FIELDWATCH_MQTT_PORT), so both find each other on one machine without options.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError

from fieldwatch.agent.client import AgentError, Transport
from fieldwatch.agent.confirm import Confirmer
from fieldwatch.agent.mqtt import default_url
from fieldwatch.agent.platform import Credentials, Platform, Refused, SimDevice, Unreachable
from fieldwatch.agent.progress import Figures, Progress
from fieldwatch.agent.sim_firmware import FirmwareSim, UpdateTally
from fieldwatch.agent.simulator import Stats, simulate
from fieldwatch.core.settings import Settings, get_settings
from fieldwatch.firmware.artifacts.signing import fingerprint, parse_public_key

#: Bind addresses meaning "every interface", and the address to connect to instead.
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104
#: After the run, how long to wait for the API to show readings published over MQTT.
SETTLE_S = 15.0
#: How often readings published over MQTT are looked for through the API.
CONFIRM_EVERY_S = 5.0


def share(text: str) -> Any:
    """An option that is a share, 0 to 1."""
    return typer.Option(min=0, max=1, help=text)


TrustKeys = Annotated[
    list[Path] | None,
    typer.Option(
        "--trust-key",
        metavar="FILE",
        exists=True,
        dir_okay=False,
        help="An Ed25519 public key (PEM, or base64 of the raw 32 bytes: what the workspace's "
        "signing keys take) to check firmware signatures with; repeatable. With it the devices "
        "take only firmware signed with one of these keys",
    ),
]


class TransportName(StrEnum):
    ws = "ws"
    mqtt = "mqtt"
    http = "http"


@dataclass
class Plan:
    server: str
    creds: Credentials
    provisioning_key: str | None
    transport: TransportName
    devices: int
    interval: float
    duration: float | None
    mqtt_url: str
    firmware: FirmwareSim

    @property
    def mode(self) -> Transport:
        modes: dict[TransportName, Transport] = {
            TransportName.ws: "ws", TransportName.mqtt: "mqtt", TransportName.http: "http"
        }  # fmt: skip
        return modes[self.transport]


def default_server(settings: Settings) -> str:
    """Where ``fieldwatch serve`` listens with these settings, as a URL to connect to
    (an "any address" bind is reached on loopback)."""
    host = ANY_ADDRESS.get(settings.host, settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def default_mqtt_url(settings: Settings, server: str) -> str:
    """The broker devices use: the configured external broker's address (without its
    admin login), else the embedded broker's port on the server's host."""
    if settings.mqtt_url:
        parts = urlsplit(settings.mqtt_url)
        host = parts.hostname or "127.0.0.1"
        return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{parts.port or 1883}"
    return default_url(server, settings.mqtt_port)


def needs_credentials(server: str) -> str:
    return f"""fieldwatch simulate signs in to the API of {server}; give one of:
  --api-key KEY (or FIELDWATCH_API_KEY)   an API key with the operator or admin role; an
                                          admin makes one with
      curl -s {server}/api/v1/api-keys -H "Authorization: Bearer $TOKEN" \\
        -H 'Content-Type: application/json' -d '{{"name": "simulator", "role": "operator"}}'
      ($TOKEN: the access_token of POST {server}/api/v1/auth/login)
  --email EMAIL --password PASSWORD       a user's login (operator or admin)
  --provisioning-key KEY                  the devices register themselves (an admin makes
                                          one with POST /api/v1/provisioning-keys)"""


async def prepare(platform: Platform, plan: Plan) -> tuple[str, list[SimDevice]]:
    """Sign in and get the fleet's tokens; returns (where, devices)."""
    where = f"on {plan.server}"
    if plan.creds.given:
        where = f"in workspace {await platform.sign_in(plan.creds)!r} " + where
    if plan.provisioning_key:
        return where, await platform.provision(plan.provisioning_key, plan.devices)
    return where, await platform.fleet(plan.devices)


def read_trust_key(path: Path) -> bytes:
    """The raw Ed25519 public key in the file ``path``, written as the workspace's key
    registration takes it (PEM, or base64 of the raw 32 bytes); ValueError naming the
    file when it holds no such key."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--trust-key {path}: not a text file; expected an Ed25519 "
                         "public key as PEM, or base64 of its raw 32 bytes") from None  # fmt: skip
    except OSError as exc:
        raise ValueError(f"--trust-key {path}: cannot read it ({exc.strerror})") from None
    if "PRIVATE KEY" in text:
        raise ValueError(f"--trust-key {path}: a private key; give the devices its public key "
                         f"(openssl pkey -in {path} -pubout)")  # fmt: skip
    try:
        return parse_public_key(text)
    except ValueError as exc:
        raise ValueError(f"--trust-key {path}: {exc}") from None


def interrupt_sets(stop: asyncio.Event) -> None:
    """The first Ctrl-C ends the run gracefully (the summary is printed); a second one
    interrupts."""
    loop = asyncio.get_running_loop()

    def first() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
        loop.add_signal_handler(signal.SIGINT, first)


async def run(plan: Plan, progress: Progress) -> Figures:
    platform = Platform(plan.server)
    try:
        where, fleet = await prepare(platform, plan)
        broker = f" ({plan.mqtt_url})" if plan.transport is TransportName.mqtt else ""
        progress.note(f"{len(fleet)} simulated devices {where}, over {plan.transport.value}"
                      f"{broker}, every {plan.interval:g} s.")  # fmt: skip
        if keys := plan.firmware.public_keys:
            progress.note("They take only firmware signed with one of these keys: "
                          + ", ".join(fingerprint(key) for key in keys) + ".")  # fmt: skip
        mqtt = plan.transport is TransportName.mqtt
        confirmer = Confirmer(platform) if mqtt and plan.creds.given else None
        tally = UpdateTally()
        figures = Figures(Stats(transport=plan.mode, updates=tally), confirmer,
                          updates_confirmed=plan.creds.given,
                          power_cuts=plan.firmware.power_loss_rate > 0)  # fmt: skip
        stop = asyncio.Event()
        interrupt_sets(stop)
        checks = asyncio.create_task(confirmer.run(CONFIRM_EVERY_S, stop)) if confirmer else None
        outcomes = None
        if plan.creds.given:  # what became of the updates: only the API can say
            outcomes = asyncio.create_task(tally.run(platform, CONFIRM_EVERY_S, stop))

        def report(stats: Stats) -> None:
            figures.stats = stats
            progress.show(figures)

        try:
            figures.stats = await simulate(
                plan.server, [d.token for d in fleet], transport=plan.mode,
                interval=plan.interval, duration=plan.duration, report=report,
                report_every=progress.every_s, mqtt_url=plan.mqtt_url, stop=stop,
                on_published=confirmer.published if confirmer else None,
                firmware=plan.firmware, versions=[d.firmware_version for d in fleet], tally=tally,
            )  # fmt: skip
        finally:
            stop.set()
            for task in (checks, outcomes):
                if task is not None:
                    await task
        if outcomes is not None:
            await tally.check(platform)
        if confirmer is not None:
            progress.note("Confirming the published readings through the API…")
            await confirmer.settle(SETTLE_S)
        return figures
    finally:
        await platform.close()


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def firmware_sim(failure_rate: float, power_loss_rate: float, trust: list[Path]) -> FirmwareSim:
    """How the devices take updates; exits with 2 when a ``--trust-key`` file holds no key."""
    try:
        keys = tuple(dict.fromkeys(read_trust_key(path) for path in trust))
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    return FirmwareSim(failure_rate=failure_rate, power_loss_rate=power_loss_rate,
                       public_keys=keys)  # fmt: skip


def simulate_command(
    devices: Annotated[int, typer.Option(min=1, help="How many virtual devices")] = 10,
    transport: Annotated[TransportName, typer.Option(help="ws, mqtt or http")] = TransportName.ws,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between readings")] = 5.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: run until Ctrl-C)")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="Fieldwatch's URL [default: http://FIELDWATCH_HOST:FIELDWATCH_PORT]"),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="FIELDWATCH_API_KEY", help="An API key (operator role)")
    ] = None,
    email: Annotated[str | None, typer.Option(help="Sign in as this user instead")] = None,
    password: Annotated[
        str | None, typer.Option(envvar="FIELDWATCH_PASSWORD", help="The user's password")
    ] = None,
    provisioning_key: Annotated[
        str | None,
        typer.Option(envvar="FIELDWATCH_PROVISIONING_KEY", help="Devices register themselves"),
    ] = None,
    workspace: Annotated[
        str | None, typer.Option(help="Workspace (name or id) when the user has several")
    ] = None,
    mqtt_url: Annotated[
        str | None,
        typer.Option(help="MQTT broker [default: the server's host, FIELDWATCH_MQTT_PORT]"),
    ] = None,
    update_failure_rate: Annotated[
        float,
        share("Share of firmware updates that fail at install or come back on the old version"),
    ] = 0.0,
    power_loss_rate: Annotated[
        float,
        share(
            "Share of firmware updates whose download a power cut interrupts (the "
            "device comes back and resumes)"
        ),
    ] = 0.0,
    trust_key: TrustKeys = None,
) -> None:
    """Run a fleet of virtual devices (temperature, humidity, draining battery, occasional
    spikes) against a running server, through its API: the devices SIM-00000… are
    created the first time and get fresh tokens each run (earlier simulator tokens are
    revoked). They answer the commands ping, reboot and set_reporting_interval, apply
    pushed configuration and take firmware updates (checking their signatures with the
    --trust-key keys)."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise fail(f"A FIELDWATCH_ setting is not valid: {exc}", 2) from None
    target = (server or default_server(settings)).rstrip("/")
    creds = Credentials(api_key, email, password, workspace)
    if email and not password:
        raise fail("--email needs --password (or FIELDWATCH_PASSWORD).", 2)
    if not creds.given and not provisioning_key:
        raise fail(needs_credentials(target), 2)
    firmware = firmware_sim(update_failure_rate, power_loss_rate, trust_key or [])
    plan = Plan(target, creds, provisioning_key, transport, devices, interval, duration,
                mqtt_url or default_mqtt_url(settings, target), firmware)  # fmt: skip
    progress = Progress()
    try:
        figures = asyncio.run(run(plan, progress))
    except (Unreachable, Refused) as exc:
        progress.end_line()
        raise fail(str(exc)) from None
    except AgentError as exc:
        progress.end_line()
        raise fail(f"No device could connect: {exc}") from None
    progress.end_line()
    for line in figures.summary(plan.mqtt_url):
        typer.echo(line)
    if figures.nothing_arrived:
        raise typer.Exit(1)
