"""What the connectors declare: data types that exist, lifecycles by date."""

from __future__ import annotations

from datetime import date

from fieldwatch.integrations.connectors.catalogue import CONNECTORS, connector
from fieldwatch.integrations.metrics import METRICS, metric


def test_every_connector_brings_only_known_metrics() -> None:
    for info in CONNECTORS.values():
        unknown = set(info.data_types) - set(METRICS)
        assert not unknown, (info.type, unknown)
        assert info.successor is None or info.successor in CONNECTORS


def test_fitbit_legacy_is_sunset_and_points_to_google_health() -> None:
    fitbit = connector("fitbit")
    assert fitbit is not None
    assert fitbit.lifecycle(date(2026, 9, 29)) == "deprecated"
    assert fitbit.lifecycle(date(2026, 12, 3)) == "sunset"
    assert not fitbit.accepts_connections(date(2026, 12, 3))
    assert fitbit.successor == "google_health"


def test_deprecated_and_upload_only_connectors_take_no_oauth_connections() -> None:
    today = date(2026, 12, 3)
    assert connector("google_fit").lifecycle(today) == "deprecated"  # type: ignore[union-attr]
    assert not connector("google_fit").accepts_connections(today)  # type: ignore[union-attr]
    assert not connector("apple_health").accepts_connections(today)  # type: ignore[union-attr]
    assert connector("oura").accepts_connections(today)  # type: ignore[union-attr]
    assert connector("nope") is None


def test_metrics_carry_loinc_ucum_and_ranges() -> None:
    hr = metric("heart_rate")
    assert hr is not None and (hr.loinc, hr.unit) == ("8867-4", "/min")
    assert hr.plausible(72) and not hr.plausible(400) and not hr.plausible(-1)
    assert (metric("steps").loinc, metric("spo2").unit) == ("55423-8", "%")  # type: ignore[union-attr]
    assert metric("body_weight").loinc == "29463-7"  # type: ignore[union-attr]
