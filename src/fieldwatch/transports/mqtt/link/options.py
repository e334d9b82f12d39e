"""The settings of one MQTT link: where it connects, as whom, and its limits."""

from __future__ import annotations

import ssl
from dataclasses import KW_ONLY, dataclass
from typing import Literal

#: The MQTT clients an ``MqttLink`` can run on.
CLIENTS = ("paho", "mqtt5")


@dataclass(frozen=True, slots=True)
class MqttLinkOptions:
    """Connection parameters of an ``MqttLink``.

    ``receive_maximum`` switches the link to MQTT 5 and tells the broker how many QoS 1
    messages it may have in flight to it at once; ``session_expiry`` (MQTT 5) is how
    long the broker keeps the session when ``clean_session`` is false. The handler gets
    batches of up to ``batch_size`` messages; reading pauses when ``max_pending`` wait.
    ``handler_depth``: how many batches the handler may have at once (above 1, it keeps
    its acknowledgements in order itself).
    ``client``: ``paho`` (MQTT 3.1.1 or 5) or ``mqtt5`` (the mqtt5 codec on Fieldwatch's
    own asyncio connection; MQTT 5 only, so it needs ``receive_maximum``).
    """

    host: str
    port: int = 1883
    _: KW_ONLY
    client_id: str
    username: str | None = None
    password: str | None = None
    keepalive: int = 60
    tls: bool | ssl.SSLContext = False
    clean_session: bool = True
    session_expiry: int = 0xFFFFFFFF
    receive_maximum: int | None = None
    batch_size: int = 500
    max_pending: int = 10_000
    handler_depth: int = 1
    connect_timeout: float = 10.0
    publish_timeout: float = 10.0
    min_reconnect_delay: float = 0.5
    max_reconnect_delay: float = 30.0
    client: Literal["paho", "mqtt5"] = "paho"

    def __post_init__(self) -> None:
        if not self.client_id:
            raise ValueError("client_id is required")
        if self.batch_size < 1 or self.max_pending < self.batch_size:
            raise ValueError("need 1 <= batch_size <= max_pending")
        if self.handler_depth < 1:
            raise ValueError("handler_depth is at least 1")
        if self.receive_maximum is not None and not 1 <= self.receive_maximum <= 65535:
            raise ValueError("receive_maximum is 1 to 65535 (MQTT 5)")
        if self.client not in CLIENTS:
            raise ValueError(f"client is one of {', '.join(CLIENTS)}, not {self.client!r}")
        if self.client == "mqtt5" and self.receive_maximum is None:
            raise ValueError(
                "the mqtt5 client speaks MQTT 5 only: it needs receive_maximum (MQTT 3.1.1 "
                "brokers such as the embedded one need the paho client)"
            )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def mqtt5(self) -> bool:
        return self.receive_maximum is not None
