"""Garmin's summaries as samples of Fieldwatch's metrics.

Times are epoch seconds with the offset from UTC where they were measured
(``startTimeOffsetInSeconds``), which the samples keep:

- dailies: minute heart rate (``timeOffsetHeartRateSamples``: seconds after the start
  → bpm) always; steps, distance (``distanceInMeters``) and resting heart rate only
  once the day is over (``durationInSeconds`` of a whole day: Garmin sends a day's
  summary again as it goes, and a partial total would be stored once and stay);
  a summary is a repeat when its id (for dailies: and its duration) was seen before;
- sleeps: the time asleep (deep + light + REM, else the duration) in minutes, at the
  sleep's start;
- pulse ox (``timeOffsetSpo2Values``) and respiration (``timeOffsetEpochToBreaths``):
  each value at its time;
- body compositions: ``weightInGrams`` as kg at ``measurementTimeInSeconds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from fieldwatch.integrations.connectors.base import Sample

DAY_S = 86_400


@dataclass
class Summary:
    """One of Garmin's summaries: its type (as named in a push), id and samples."""

    kind: str
    #: What makes it a repeat: its id (for dailies, with how much of the day it covers:
    #: a day sent again later is new, the same one again is a repeat).
    record_id: str
    user_id: str
    start: datetime
    samples: list[tuple[str, Sample]] = field(default_factory=list)


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _at(seconds: Any, offset: Any) -> datetime | None:
    when, shift = _number(seconds), _number(offset) or 0.0
    if when is None or abs(shift) >= DAY_S:
        return None
    return datetime.fromtimestamp(when, timezone(timedelta(seconds=int(shift))))


def _series(start: datetime, values: Any, metric: str, sid: str) -> list[tuple[str, Sample]]:
    if not isinstance(values, dict):
        return []
    out = []
    for offset, value in values.items():
        shift = _number(offset)
        if shift is not None:
            out.append((metric, Sample(start + timedelta(seconds=shift), _number(value), sid)))
    out.sort(key=lambda item: item[1].ts)
    return out


def _dailies(item: dict[str, Any], start: datetime, sid: str) -> list[tuple[str, Sample]]:
    out = _series(start, item.get("timeOffsetHeartRateSamples"), "heart_rate", sid)
    if (_number(item.get("durationInSeconds")) or 0) >= DAY_S:
        for metric, key in (
            ("steps", "steps"),
            ("distance", "distanceInMeters"),
            ("resting_heart_rate", "restingHeartRateInBeatsPerMinute"),
        ):
            if key in item:
                out.append((metric, Sample(start, _number(item[key]), sid)))  # fmt: skip
    return out


def _sleeps(item: dict[str, Any], start: datetime, sid: str) -> list[tuple[str, Sample]]:
    stages = [_number(item.get(k)) for k in ("deepSleepDurationInSeconds",
              "lightSleepDurationInSeconds", "remSleepInSeconds")]  # fmt: skip
    asleep = sum(s for s in stages if s is not None) if any(stages) else \
        _number(item.get("durationInSeconds"))  # fmt: skip
    return [("sleep_duration", Sample(start, None if asleep is None else asleep / 60, sid))]


def _body(item: dict[str, Any], start: datetime, sid: str) -> list[tuple[str, Sample]]:
    grams = _number(item.get("weightInGrams"))
    return [("body_weight", Sample(start, None if grams is None else grams / 1000, sid))]


def summary(kind: str, item: dict[str, Any]) -> Summary | None:
    """``item`` of type ``kind`` as a summary with its samples (None: not readable)."""
    sid, user = item.get("summaryId"), item.get("userId")
    if kind == "bodyComps":
        start = _at(item.get("measurementTimeInSeconds"),
                    item.get("measurementTimeOffsetInSeconds"))  # fmt: skip
    else:
        start = _at(item.get("startTimeInSeconds"), item.get("startTimeOffsetInSeconds"))
    if not sid or not user or start is None:
        return None
    sid = str(sid)
    if kind == "dailies":
        samples = _dailies(item, start, sid)
    elif kind == "sleeps":
        samples = _sleeps(item, start, sid)
    elif kind == "pulseox":
        samples = _series(start, item.get("timeOffsetSpo2Values"), "spo2", sid)
    elif kind == "allDayRespiration":
        samples = _series(start, item.get("timeOffsetEpochToBreaths"), "respiratory_rate", sid)
    elif kind == "bodyComps":
        samples = _body(item, start, sid)
    else:
        return None
    record = f"{sid}:{int(_number(item.get('durationInSeconds')) or 0)}" \
        if kind == "dailies" else sid  # fmt: skip
    return Summary(kind, record, str(user), start, samples)
