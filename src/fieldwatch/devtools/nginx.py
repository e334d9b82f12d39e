"""A real nginx (Debian's package) running the shipped configuration
(``deploy/nginx/fieldwatch.conf`` of the source checkout) on a loopback port, in front
of servers of the caller's choosing (the tests, ``devtools.topology``):

    with Nginx(upstreams={"fieldwatch_api": ["127.0.0.1:8001"], ...}, firmware_dir=...) as nginx:
        nginx.url   # http://127.0.0.1:<port>

The template is rendered the way envsubst renders it (only ``${FIELDWATCH_NGINX_*}``),
next to a small main configuration of its own (paths in a temporary prefix); only the
upstreams file is written for the occasion.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The source checkout this package is installed from (``pip install -e .``).
ROOT = Path(__file__).resolve().parents[3]
NGINX_DIR = ROOT / "deploy" / "nginx"
TEMPLATE = NGINX_DIR / "fieldwatch.conf"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
UPSTREAMS = ("fieldwatch_api", "fieldwatch_realtime", "fieldwatch_gateway")

MAIN = """\
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {mime_types};
    default_type application/octet-stream;
    include {dir}/upstreams.conf;
    include {dir}/fieldwatch.conf;
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its ``${NAME}`` placeholders filled in (envsubst's way); every
    placeholder must be a ``FIELDWATCH_NGINX_`` one with a value."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name.startswith("FIELDWATCH_NGINX_") or name not in values:
            raise KeyError(f"no value for ${{{name}}}")
        return values[name]

    return PLACEHOLDER.sub(fill, template)


def upstreams_conf(servers: Mapping[str, Sequence[str]]) -> str:
    """An upstreams file like ``upstreams.compose.conf``, with the given addresses."""
    blocks = []
    for name in UPSTREAMS:
        lines = [f"    server {address};" for address in servers[name]]
        if name == "fieldwatch_realtime":
            lines.insert(0, "    ip_hash;")
        else:
            lines.append("    keepalive 8;")
        blocks.append(f"upstream {name} {{\n" + "\n".join(lines) + "\n}\n")
    return "\n".join(blocks)


class Nginx:
    """nginx with the shipped server configuration. ``upstreams``: the addresses of each
    upstream (``fieldwatch_api``, ``fieldwatch_realtime``, ``fieldwatch_gateway``), or
    ``upstreams_text`` for a whole file; ``tls_files``: files (name → text) for the TLS
    include directory; ``port``: where it listens (default: a free one). Run as root, its
    workers run as ``nobody`` (as a packaged nginx's do, under a user of their own)."""

    def __init__(
        self,
        *,
        firmware_dir: Path,
        upstreams: Mapping[str, Sequence[str]] | None = None,
        upstreams_text: str | None = None,
        tls_files: Mapping[str, str | bytes] | None = None,
        port: int | None = None,
    ) -> None:
        if not TEMPLATE.is_file():
            raise FileNotFoundError(f"{TEMPLATE} is missing: this needs a source checkout")
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fw-nginx-"))
        self.dir.chmod(0o755)
        self.access_log = self.dir / "access.log"
        tls_dir = self.dir / "tls"
        tls_dir.mkdir()
        for name, content in (tls_files or {}).items():
            path = tls_dir / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        values = {
            "FIELDWATCH_NGINX_LISTEN": f"127.0.0.1:{self.port}",
            "FIELDWATCH_NGINX_SERVER_NAME": "_",
            "FIELDWATCH_NGINX_FIRMWARE_DIR": str(firmware_dir),
            "FIELDWATCH_NGINX_ACCESS_LOG": str(self.access_log),
            "FIELDWATCH_NGINX_TLS_INCLUDE": f"{tls_dir}/*.conf",
        }
        (self.dir / "fieldwatch.conf").write_text(render(TEMPLATE.read_text(), values))
        text = upstreams_text if upstreams_text is not None else upstreams_conf(upstreams or {})
        (self.dir / "upstreams.conf").write_text(text)
        root = hasattr(os, "geteuid") and os.geteuid() == 0
        self.config = self.dir / "nginx.conf"
        self.config.write_text(
            MAIN.format(
                user="user nobody nogroup;" if root else "",
                dir=self.dir,
                mime_types=self._mime_types(),
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def _mime_types(self) -> str:
        for candidate in ("/etc/nginx/mime.types", "/usr/share/nginx/mime.types"):
            if Path(candidate).is_file():
                return candidate
        fallback = self.dir / "mime.types"
        fallback.write_text("types { text/html html; application/json json; }\n")
        return str(fallback)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self, *extra: str) -> list[str]:
        binary = nginx_binary()
        assert binary is not None, "nginx is not installed"
        return [binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                "-c", str(self.config), *extra]  # fmt: skip

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the configuration."""
        return subprocess.run(self.argv("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> Nginx:
        log = (self.dir / "stderr.log").open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.errors()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.port}: {self.errors()}")

    def errors(self) -> str:
        parts = [
            p.read_text() for p in (self.dir / "stderr.log", self.dir / "error.log") if p.exists()
        ]
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
