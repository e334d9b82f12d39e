"""nginx (Debian's package) on a port of its own, with a configuration written for the
run: the firmware file served statically, and, with an upstream, Fieldwatch behind it
handing downloads over with ``X-Accel-Redirect``."""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from harness.server import free_port

STATIC_PATH = "/static/firmware.bin"
ACCEL_PREFIX = "/_firmware/"

CONFIG = """\
user {user};
worker_processes {workers};
worker_rlimit_nofile 20000;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
{upstream_block}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        # (b) the file itself, as any static file
        location = {static_path} {{ alias {blob}; }}
{upstream_locations}
    }}
}}
"""

UPSTREAM_LOCATIONS = """\
        # (c) Fieldwatch authorises; nginx sends the file it names
        location {accel_prefix} {{ internal; alias {firmware_dir}/; }}
        location / {{
            proxy_pass http://fieldwatch;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}"""

UPSTREAM_BLOCK = """\
    upstream fieldwatch {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
    }}"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise SystemExit("nginx is not installed: apt-get install -y nginx-light")
    return found


def nginx_version() -> str:
    done = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=True)
    return done.stderr.strip().removeprefix("nginx version: ")


class Nginx:
    """nginx serving ``blob`` at ``STATIC_PATH``; with ``upstream_port``, proxying the
    rest to Fieldwatch there, with the ``X-Accel-Redirect`` location over
    ``firmware_dir``."""

    def __init__(
        self,
        blob: Path,
        firmware_dir: Path,
        upstream_port: int | None = None,
        workers: int = 2,
    ) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fw-bench-nginx-"))
        locations = (
            UPSTREAM_LOCATIONS.format(accel_prefix=ACCEL_PREFIX, firmware_dir=firmware_dir)
            if upstream_port
            else ""
        )
        upstream = UPSTREAM_BLOCK.format(upstream_port=upstream_port) if upstream_port else ""
        text = CONFIG.format(
            user=getpass.getuser(),
            workers=workers,
            dir=self.dir,
            port=self.port,
            static_path=STATIC_PATH,
            blob=blob,
            upstream_locations=locations,
            upstream_block=upstream,
        )
        self.config = self.dir / "nginx.conf"
        self.config.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        argv = [nginx_binary(), "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                "-c", str(self.config)]  # fmt: skip
        log = (self.dir / "stderr.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"nginx did not start: {self.dir}/stderr.log, error.log")
            if len(self.processes()) > 1:  # the master and its workers
                time.sleep(0.2)
                return self
            time.sleep(0.05)
        raise SystemExit(f"nginx did not start its workers: {self.dir}/error.log")

    def processes(self) -> list[psutil.Process]:
        assert self.proc is not None
        master = psutil.Process(self.proc.pid)
        return [master, *master.children(recursive=True)]

    def cpu_s(self) -> float:
        """CPU seconds of the master and its workers so far."""
        total = 0.0
        for p in self.processes():
            times = p.cpu_times()
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)  # its configuration, logs, temp files

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
