"""The connectors that can be connected to (OAuth), by type."""

from __future__ import annotations

from fieldwatch.integrations.connectors.base import Connector
from fieldwatch.integrations.connectors.oura import OuraConnector

CONNECTOR_CLASSES: dict[str, type[Connector]] = {"oura": OuraConnector}


def oauth_connector(kind: str) -> Connector | None:
    cls = CONNECTOR_CLASSES.get(kind)
    return cls() if cls is not None else None
