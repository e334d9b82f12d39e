"""The health metrics Fieldwatch stores from wearables, in Open mHealth / IEEE 1752.1
terms: each metric's name in the telemetry store, its LOINC code where one exists, its
UCUM unit and the range a plausible reading lies in (used by the quality score).

Vendors' own names and units are mapped onto these by each connector; a reading of a
metric not listed here is not stored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HealthMetric:
    name: str
    title: str
    #: LOINC code (``None`` where LOINC has no code for the measure).
    loinc: str | None
    #: UCUM unit code.
    unit: str
    low: float
    high: float
    #: Open mHealth schema the metric corresponds to.
    omh_schema: str

    def plausible(self, value: float) -> bool:
        return self.low <= value <= self.high


_METRICS = (
    HealthMetric("heart_rate", "Heart rate", "8867-4", "/min", 25, 250, "omh:heart-rate"),
    HealthMetric("resting_heart_rate", "Resting heart rate", "40443-4", "/min", 25, 150,
                 "omh:heart-rate"),
    HealthMetric("steps", "Steps", "55423-8", "{steps}", 0, 100_000, "omh:step-count"),
    HealthMetric("spo2", "Oxygen saturation (pulse oximetry)", "59408-5", "%", 50, 100,
                 "omh:oxygen-saturation"),
    HealthMetric("body_weight", "Body weight", "29463-7", "kg", 1, 400, "omh:body-weight"),
    HealthMetric("body_temperature", "Body temperature", "8310-5", "Cel", 30, 44,
                 "omh:body-temperature"),
    HealthMetric("respiratory_rate", "Respiratory rate", "9279-1", "/min", 3, 70,
                 "omh:respiratory-rate"),
    HealthMetric("sleep_duration", "Sleep duration", "93832-4", "min", 0, 1440,
                 "omh:sleep-duration"),
    HealthMetric("systolic_bp", "Systolic blood pressure", "8480-6", "mm[Hg]", 50, 260,
                 "omh:blood-pressure"),
    HealthMetric("diastolic_bp", "Diastolic blood pressure", "8462-4", "mm[Hg]", 25, 160,
                 "omh:blood-pressure"),
    HealthMetric("distance", "Distance walked", "55430-3", "m", 0, 300_000,
                 "omh:physical-activity"),
)  # fmt: skip

METRICS: dict[str, HealthMetric] = {m.name: m for m in _METRICS}


def metric(name: str) -> HealthMetric | None:
    return METRICS.get(name)
