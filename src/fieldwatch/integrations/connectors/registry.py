"""The connectors that can be connected to (OAuth), by type, and those Fieldwatch can
sync data from."""

from __future__ import annotations

from fieldwatch.integrations.connectors.base import Connector, DataConnector
from fieldwatch.integrations.connectors.garmin import GarminConnector
from fieldwatch.integrations.connectors.google_health import GoogleHealthConnector
from fieldwatch.integrations.connectors.oura import OuraConnector
from fieldwatch.integrations.connectors.withings import WithingsConnector

CONNECTOR_CLASSES: dict[str, type[DataConnector]] = {
    "google_health": GoogleHealthConnector,
    "oura": OuraConnector,
    "withings": WithingsConnector,
    "garmin": GarminConnector,
}


def oauth_connector(kind: str) -> Connector | None:
    cls = CONNECTOR_CLASSES.get(kind)
    return cls() if cls is not None else None


def data_connector(kind: str) -> DataConnector | None:
    cls = CONNECTOR_CLASSES.get(kind)
    return cls() if cls is not None else None
