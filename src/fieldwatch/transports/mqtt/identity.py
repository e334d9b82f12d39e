"""A stable MQTT client id for each gateway process on an external broker.

With a fixed client id and a persistent session, the broker keeps Fieldwatch's
subscriptions while it is down (crashed, restarting) and queues the QoS 1 messages
devices publish meanwhile; they are delivered, committed and acknowledged once it is
back. Without it, a message the broker acknowledged to a device while no Fieldwatch
process was connected went to nobody.

Each process of one installation (``serve --workers N``) takes a slot: the first of
``data_dir/mqtt-gateway-<n>.lock`` it can lock. The lock lasts as long as the process,
so after a crash the next process takes the same slot, hence the same client id and
session.

The id must not be guessable: with Mosquitto, a login that may choose its client id (a
provisioning key) could otherwise connect under it and take the gateway's connection
over. By default it is derived from the installation's secret (an HMAC), so it is the
same in every process and after every restart, and unknown to anyone without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX): one slot
    fcntl = None  # type: ignore[assignment]

MAX_SLOTS = 256


def client_id_prefix(configured: str | None, secret: str) -> str:
    """The configured prefix, else ``fieldwatch-`` and 128 bits of an HMAC of this host's
    name under the installation's secret (one per host: hosts do not share sessions)."""
    if configured:
        return configured
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    digest = hmac.new(secret.encode(), f"mqtt gateway on {host}".encode(), hashlib.sha256)
    return f"fieldwatch-{digest.hexdigest()[:32]}"


def claim_client_id(
    configured: str | None, data_dir: Path, secret: str
) -> tuple[str, IO[str] | None]:
    """``<prefix>-<slot>`` and the open lock file that holds the slot (close it to give
    the slot up)."""
    prefix = client_id_prefix(configured, secret)
    if fcntl is None:
        return f"{prefix}-0", None
    data_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(MAX_SLOTS):
        handle = (data_dir / f"mqtt-gateway-{slot}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return f"{prefix}-{slot}", handle
    raise RuntimeError(f"more than {MAX_SLOTS} MQTT gateway processes share {data_dir}")
