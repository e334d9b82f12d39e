"""The Fieldwatch device SDK: a device client (WebSocket or HTTP) and a fleet simulator."""

from fieldwatch.agent.client import AgentError, DeviceAgent

__all__ = ["AgentError", "DeviceAgent"]
