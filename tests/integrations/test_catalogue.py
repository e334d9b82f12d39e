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
    assert (fitbit.support_ended, fitbit.sunset_text) == (date(2026, 9, 30), "early November 2026")
    assert fitbit.lifecycle(date(2026, 10, 15)) == "deprecated"  # unsupported, still answering
    assert fitbit.lifecycle(date(2026, 11, 1)) == "sunset"
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


def test_each_connector_declares_exactly_what_it_syncs() -> None:
    """A declared data type the connector never fetches (nor takes pushed) would be
    offered for consent and then silently never synced."""
    from fieldwatch.integrations.connectors.garmin import SUMMARY_METRICS
    from fieldwatch.integrations.connectors.registry import CONNECTOR_CLASSES

    for kind, cls in CONNECTOR_CLASSES.items():
        synced = set(cls.fetchable) or {m for ms in SUMMARY_METRICS.values() for m in ms}
        assert set(cls.info.data_types) == synced, kind
        assert len(cls.info.data_types) == len(synced), kind
    assert connector("oura").data_types == ("heart_rate", "steps")  # type: ignore[union-attr]
    assert "sleep_duration" not in connector("withings").data_types  # type: ignore[union-attr]
    # Fieldwatch's OAuth flow sends a PKCE (S256) challenge to every vendor.
    assert {CONNECTORS[k].auth for k in CONNECTOR_CLASSES} == {"oauth2_pkce"}
