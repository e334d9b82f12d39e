"""Shapes of the health metrics in API answers: each metric's LOINC code and UCUM unit
(``integrations.metrics``), for the catalogue of connectors and the readings of health
devices."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from fieldwatch.integrations.metrics import METRICS, HealthMetric


class HealthMetricRead(BaseModel):
    """A health metric in Open mHealth / IEEE 1752.1 terms."""

    name: str = Field(description="The metric's name in the telemetry store (data_type)")
    title: str
    loinc: str | None = Field(description="LOINC code; null where LOINC has none")
    unit: str = Field(description="UCUM unit code the metric is normalised to")
    omh_schema: str = Field(description="The Open mHealth schema it corresponds to")

    @classmethod
    def of(cls, metric: HealthMetric) -> HealthMetricRead:
        return cls(name=metric.name, title=metric.title, loinc=metric.loinc, unit=metric.unit,
                   omh_schema=metric.omh_schema)  # fmt: skip


def health_metrics(names: Iterable[str]) -> dict[str, HealthMetricRead]:
    """The known health metrics among ``names``, by name, in name order."""
    return {n: HealthMetricRead.of(METRICS[n]) for n in sorted(set(names)) if n in METRICS}


def health_metrics_field() -> dict[str, HealthMetricRead]:
    """The field of an answer describing the health metrics among its data types."""
    found: dict[str, HealthMetricRead] = Field(
        default_factory=dict,
        description="The health metrics among the answer's data types, with their LOINC "
        "codes and UCUM units (for health devices: wearables and their uploads)",
    )
    return found
