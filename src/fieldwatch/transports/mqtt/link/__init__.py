"""Fieldwatch's own privileged MQTT connection to a broker, for asyncio code.

``MqttLink`` drives paho-mqtt 2.x from the running event loop (``socket_driver``): the
socket is watched with ``add_reader``/``add_writer`` and paho parses packets on the loop
thread, so there is no network thread and no lock. Only the blocking TCP (and TLS)
connect runs in a worker thread. bench/bench_mqtt_clients.py measured this way of using
paho as the fastest of the candidates.

- MQTT 3.1.1 by default: what both Mosquitto 2 and amqtt 0.12 speak (amqtt refuses
  MQTT 5). With ``receive_maximum`` the link speaks MQTT 5 and tells the broker how many
  QoS 1 messages it may have in flight to it at once. Acknowledging after commit makes
  that window the ceiling of the link's throughput (window / commit time): over MQTT
  3.1.1 Mosquitto allows ``max_inflight_messages`` (default 20) per client.
- Incoming messages wait in the ``inbox``; one drain task hands them to the handler in
  batches of up to ``batch_size``.
- Back-pressure (``inbox``): when ``max_pending`` messages wait for the handler the link
  stops reading the socket and reads again once half of them are handled. A pause
  longer than the keepalive costs the connection: unacknowledged QoS 1 messages then
  come again.
- Acknowledge after commit: QoS 1 messages are acknowledged only by ``ack()``. A
  message from an earlier connection is never acknowledged (its packet id may name
  another message now); with a persistent session the broker sends it again.
- Reconnects with exponential backoff and jitter (``supervisor``), re-subscribes every
  remembered filter, then runs the ``on_connect`` hooks.

Modules: ``options`` (``MqttLinkOptions``), ``messages`` (what the link hands out and
its errors), ``socket_driver``, ``inbox``, ``supervisor`` and ``mqtt_link`` (the
``MqttLink`` the rest of the code uses).
"""

from fieldwatch.transports.mqtt.link.messages import (
    ConnectHook,
    IncomingMessage,
    MessageHandler,
    MqttConnectError,
    MqttLinkError,
    MqttPublishError,
)
from fieldwatch.transports.mqtt.link.mqtt_link import MqttLink
from fieldwatch.transports.mqtt.link.options import MqttLinkOptions

__all__ = [
    "ConnectHook",
    "IncomingMessage",
    "MessageHandler",
    "MqttConnectError",
    "MqttLink",
    "MqttLinkError",
    "MqttLinkOptions",
    "MqttPublishError",
]
