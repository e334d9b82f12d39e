"""A real Mosquitto broker for the tests, the benchmarks and ``devtools.topology``: a
``mosquitto`` process on a free loopback port, optionally with the dynamic-security
plugin that ships with Mosquitto 2.

    with Mosquitto(dynsec=True) as broker:
        broker.port, broker.admin_username, broker.admin_password
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DYNSEC_PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)),
        None,
    )


def dynsec_plugin() -> str | None:
    return next((p for p in DYNSEC_PLUGIN_PATHS if os.path.exists(p)), None)


class Mosquitto:
    """One broker process. ``dynsec=True`` loads the dynamic-security plugin with one
    admin client (``admin_username``/``admin_password``) allowed to use
    ``$CONTROL/dynamic-security/#``; anonymous clients are then refused.

    ``set_tcp_nodelay`` is on, as in deploy/compose: with Mosquitto's default (off) the
    answer to a dynamic-security request waits behind its acknowledgement for the
    client's delayed ACK, about 40 ms a request on Linux (``nodelay=False`` to measure
    it, bench/bench_dynsec.py)."""

    def __init__(
        self, *, dynsec: bool = False, port: int | None = None, nodelay: bool = True
    ) -> None:
        self.dynsec = dynsec
        self.nodelay = nodelay
        self.port = port or free_port()
        self.admin_username = "fieldwatch-admin"
        self.admin_password = secrets.token_urlsafe(16)
        self.dir = Path(tempfile.mkdtemp(prefix="fw-mosquitto-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The URL with the dynamic-security admin's login (``FIELDWATCH_MQTT_URL``)."""
        return f"mqtt://{self.admin_username}:{self.admin_password}@127.0.0.1:{self.port}"

    def _config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            f"log_dest file {self.dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            f"set_tcp_nodelay {'true' if self.nodelay else 'false'}",
        ]
        if self.dynsec:
            plugin = dynsec_plugin()
            ctrl = shutil.which("mosquitto_ctrl")
            if plugin is None or ctrl is None:
                raise RuntimeError("the Mosquitto dynamic-security plugin is not installed")
            state = self.dir / "dynamic-security.json"
            subprocess.run(
                [ctrl, "dynsec", "init", str(state), self.admin_username, self.admin_password],
                check=True,
                capture_output=True,
            )
            lines += [
                "allow_anonymous false",
                f"plugin {plugin}",
                f"plugin_opt_config_file {state}",
            ]
        else:
            lines.append("allow_anonymous true")
        path = self.dir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Run as root, Mosquitto switches to its own user before it opens the log and
            # the plugin reads (and saves) its state: let that user at the directory.
            self.dir.chmod(0o777)
            for item in self.dir.iterdir():
                item.chmod(0o666)
        return path

    def start(self) -> Mosquitto:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        self.process = subprocess.Popen(
            [binary, "-c", str(self._config())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err or self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port}")

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
