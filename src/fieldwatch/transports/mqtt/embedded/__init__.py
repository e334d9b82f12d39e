"""The MQTT broker embedded in ``fieldwatch serve`` (amqtt 0.12.1), for installs without
an external Mosquitto.

Every client authenticates through an ``authority`` (anonymous clients are refused) and
each PUBLISH and SUBSCRIBE is checked against ``authority.authorize`` or, by default,
the rules of ``acl.py``.

amqtt is used through its external-listener API: this package owns the TCP socket, reads
the CONNECT packet and authenticates it *before* amqtt sees the connection, then hands
the stream over. That closes holes amqtt 0.12.1 has when it authenticates by itself:

* it drops the existing session of a client id (subscriptions included) and takes over
  a live one before checking credentials, so anyone who knew a device's client id could
  silently cut it off; here a client id held by one principal cannot be used by another,
  a device may use only its own device id as client id, and a device id held by someone
  else while the device was away goes back to the device when it connects;
* it sends every retained message matching *any* client's subscription to each newly
  connected client, whatever that client subscribed to; so retained messages are not
  kept at all (the retain flag is ignored, messages are delivered live);
* it never enforces the keep-alive, so a silent client never times out and its last will
  never fires; here a client that sends nothing for 1.5 x its keep-alive is dropped (and
  its will published);
* it does not check the topic of a last will; here it must be a topic the client may
  publish to, or the connection is refused;
* it has no size limit on packets; here a packet above ``max_packet_size`` closes the
  connection.

Only MQTT 3.1.1 is spoken (MQTT 5 and 3.1 clients get "unacceptable protocol version"),
there are no shared subscriptions (``$share/...`` is refused) and no ``$SYS`` topics.
QoS 1 and 2 and persistent sessions (``clean_session=False``, kept ``session_expiry``
seconds) work. A QoS 1 PUBLISH is acknowledged only once every ``service`` client that
received it has acknowledged its copy (``receipts``): in ``fieldwatch serve``, once the
gateway has committed it. The messages only the gateway may receive (data, heartbeats,
status, registrations, control) are not routed by amqtt at all once the gateway is
connected: ``EmbeddedBroker.hand_over`` gives them to the gateway's link in-process, and
their PUBACK too waits for the commit (``handover``).

Modules: ``broker`` (``EmbeddedBroker``: lifecycle and each connection), ``admission``
(CONNECT pre-authentication and the topic rules), ``clients`` (who holds which client
id), ``keepalive`` (the client's stream and the keep-alive watch), ``amqtt_glue`` (the
plugins and the broker class amqtt runs), ``receipts`` (acknowledge after commit) and
``handover`` (the in-process path to the gateway).
"""

from fieldwatch.transports.mqtt.embedded.admission import Authority
from fieldwatch.transports.mqtt.embedded.broker import EmbeddedBroker

__all__ = ["Authority", "EmbeddedBroker"]
