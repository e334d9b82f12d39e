"""How the embedded broker plugs into amqtt 0.12.1: its configuration, the auth and
topic plugins, and a broker class that keeps no retained messages and acknowledges a
client's QoS 1 PUBLISH only once Fieldwatch's gateway has committed it (``receipts``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqtt.contexts import Action as AmqttAction
from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from fieldwatch.transports.mqtt.embedded.admission import Gate
from fieldwatch.transports.mqtt.embedded.clients import principal_of
from fieldwatch.transports.mqtt.embedded.receipts import ReceiptBroker

if TYPE_CHECKING:
    from fieldwatch.transports.mqtt.embedded.broker import EmbeddedBroker

LISTENER = "default"


def amqtt_config(owner: EmbeddedBroker, bind: str, session_expiry: int | None) -> BrokerConfig:
    """amqtt's configuration: one external listener (the owner hands it the admitted
    connections) and the plugins below, which call back into ``owner``."""
    plugin_cfg = {"broker": owner}
    return BrokerConfig(
        listeners={LISTENER: ListenerConfig(type=ListenerType.EXTERNAL, bind=bind)},
        plugins={
            f"{__name__}.FieldwatchAuthPlugin": plugin_cfg,
            f"{__name__}.FieldwatchTopicPlugin": plugin_cfg,
        },
        session_expiry_interval=session_expiry,
        timeout_disconnect_delay=0,
    )


async def allowed(gate: Gate, session: Any, topic: str | None, action: Any) -> bool:
    """amqtt's topic check: the admitted principal's rules."""
    principal = principal_of(session)
    if principal is None or topic is None:
        return False
    if action == AmqttAction.RECEIVE:
        return True  # the subscription was checked
    if action == AmqttAction.PUBLISH:
        return await gate.may_publish(principal, topic)
    if action == AmqttAction.SUBSCRIBE:
        return await gate.authorize(principal, "subscribe", topic)
    return False


class FieldwatchAuthPlugin(BaseAuthPlugin):
    """amqtt auth plugin: accepts only connections admitted by ``EmbeddedBroker``."""

    @dataclass
    class Config:
        broker: Any = None

    async def authenticate(self, *, session: Any) -> bool:
        broker: EmbeddedBroker = self.config.broker
        return broker.clients.claim(session)


class FieldwatchTopicPlugin(BaseTopicPlugin):
    """amqtt topic plugin: publish and subscribe rules of ``EmbeddedBroker``."""

    @dataclass
    class Config:
        broker: Any = None

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        broker: EmbeddedBroker = self.config.broker
        return await allowed(broker.gate, session, topic, action)


class AmqttBroker(ReceiptBroker):
    """amqtt's broker without retained messages, calling the gate's topic rules directly
    (the topic plugin makes the same decision, through a task per check). A client's
    QoS 1 PUBLISH is acknowledged once Fieldwatch's gateway (the ``service`` principal)
    has acknowledged its copy, i.e. committed it (see ``receipts``)."""

    def __init__(self, config: BrokerConfig, gate: Gate) -> None:
        super().__init__(config)
        self._gate = gate

    async def _topic_filtering(self, session: Any, topic: str, action: Any) -> bool:
        return await allowed(self._gate, session, topic, action)

    def is_service(self, session: Any) -> bool:
        principal = principal_of(session)
        return principal is not None and principal.kind == "service"

    async def retain_message(
        self, source_session: Any, topic_name: str | None, data: Any, qos: int | None = None
    ) -> None:
        """Retained messages are never stored (amqtt 0.12.1 would leak them to every new
        client)."""


def quiet_amqtt() -> None:
    """amqtt logs every connection at INFO; keep it to warnings unless configured."""
    for name in ("amqtt", "transitions"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
