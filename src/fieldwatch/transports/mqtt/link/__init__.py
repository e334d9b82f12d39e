"""Fieldwatch's own privileged MQTT connection to a broker, for asyncio code.

``MqttLink(options, handler)`` runs on one of two clients, as ``options.client`` says
(``FIELDWATCH_MQTT_CLIENT``); the rest of the code sees the same link either way:

- ``paho`` (the default, ``paho_link``): paho-mqtt 2.x driven from the running event
  loop (``socket_driver``): the socket is watched with ``add_reader``/``add_writer``
  and paho parses packets on the loop thread, so there is no network thread and no
  lock. Only the blocking TCP (and TLS) connect runs in a worker thread.
- ``mqtt5`` (``mqtt5_link``): the mqtt5 codec (Rust, sans-IO) on Fieldwatch's own
  asyncio connection (``mqtt5_driver``, an ``asyncio.Protocol``). MQTT 5 only: it needs
  ``receive_maximum`` and refuses MQTT 3.1.1 brokers (the embedded amqtt).

What both do:

- paho: MQTT 3.1.1 by default, what both Mosquitto 2 and amqtt 0.12 speak (amqtt
  refuses MQTT 5). With ``receive_maximum`` the link speaks MQTT 5 and tells the broker
  how many QoS 1 messages it may have in flight to it at once. Acknowledging after
  commit makes that window the ceiling of the link's throughput (window / commit time):
  over MQTT 3.1.1 Mosquitto allows ``max_inflight_messages`` (default 20) per client.
- Persistent sessions: with ``clean_session`` false the broker keeps the session (MQTT
  5: for ``session_expiry`` seconds) and its queue while the link is away.
- Incoming messages wait in the ``inbox``; one drain task hands them to the handler in
  batches of up to ``batch_size``.
- Back-pressure (``inbox``): when ``max_pending`` messages wait for the handler the link
  stops reading the socket and reads again once half of them are handled. With paho a
  pause longer than the keepalive costs the connection (unacknowledged QoS 1 messages
  then come again); the mqtt5 client keeps sending PINGREQs and waits for the PINGRESP
  until it reads again.
- Acknowledge after commit: QoS 1 messages are acknowledged only by ``ack()``. A
  message from an earlier connection is never acknowledged (its packet id may name
  another message now); with a persistent session the broker sends it again.
- Reconnects with exponential backoff and jitter (``supervisor``), re-subscribes every
  remembered filter, then runs the ``on_connect`` hooks.

Modules: ``options`` (``MqttLinkOptions``), ``messages`` (what the link hands out and
its errors), ``mqtt_link`` (the ``MqttLink`` the rest of the code uses, and what both
clients share), ``driver`` (what the inbox and the supervisor need from a client's
socket side), ``inbox``, ``supervisor``, and each client's two modules.
"""

from fieldwatch.transports.mqtt.link.messages import (
    HANDED,
    ConnectHook,
    IncomingMessage,
    MessageHandler,
    MqttConnectError,
    MqttLinkError,
    MqttPublishError,
)
from fieldwatch.transports.mqtt.link.mqtt_link import MqttLink
from fieldwatch.transports.mqtt.link.options import CLIENTS, MqttLinkOptions

__all__ = [
    "CLIENTS",
    "HANDED",
    "ConnectHook",
    "IncomingMessage",
    "MessageHandler",
    "MqttConnectError",
    "MqttLink",
    "MqttLinkError",
    "MqttLinkOptions",
    "MqttPublishError",
]
