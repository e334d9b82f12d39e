"""A data message's readings are the same whichever way it is decoded: numbers on a
sensor type's topic go straight into the batch (``add_message``'s msgspec path), any
other message the general way (``decode_data`` + ``add_readings``), and both give the
same candidates, rejections, item owners and array positions."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from fieldwatch.telemetry.ingest.batch import Batch
from fieldwatch.transports.mqtt.data import (
    Positions,
    TooManyReadings,
    add_message,
    add_readings,
    decode_data,
)

DEVICE = uuid.UUID("0190f0e0-0000-7000-8000-000000000001")
STAMP = "2026-12-05T03:00:00+00:00"

PAYLOADS: list[Any] = [
    {"value": 23.5},
    {"value": 21, "unit": "celsius", "quality": "good", "timestamp": 1764900000},
    {"value": 21.5, "timestamp": "2026-12-05T02:00:00Z"},
    {"value": -4.25, "timestamp": 1764900000.5, "unit": ""},
    [{"value": 1.0, "timestamp": 1764900000 + k} for k in range(50)],
    [{"value": k, "quality": "estimated"} for k in range(3)],
    [],
    # a timestamp that is none: refused per reading on both paths
    [{"value": 1.0, "timestamp": "yesterday"}, {"value": 2.0, "timestamp": -5}],
    # the general path's shapes: text, booleans, a missing value, extra fields, bad units
    {"value": "open"},
    {"value": True},
    {"unit": "celsius"},
    {"value": 1.0, "sensor": "t1"},
    [{"value": 1.0}, {"value": "high"}, 7, {"value": 2.0, "quality": "superb"}],
    {"value": 1.0, "unit": "x" * 40},
    {"value": 1.0, "timestamp": True},
    {"value": 1.0, "metrics": {"a": 1}},
]


def general(payload: Any, limit: int = 1000) -> tuple[Batch, Positions, int]:
    batch, positions = Batch(), Positions()
    n = add_readings(
        batch, positions, DEVICE, "temperature", decode_data(orjson.dumps(payload)), STAMP, limit
    )
    return batch, positions, n


def fast(payload: Any, limit: int = 1000) -> tuple[Batch, Positions, int]:
    batch, positions = Batch(), Positions()
    n = add_message(batch, positions, DEVICE, "temperature", orjson.dumps(payload), STAMP, limit)
    return batch, positions, n


def shown(batch: Batch, positions: Positions, n: int) -> dict[str, Any]:
    return {
        "n": n,
        "total": batch.total,
        "candidates": batch.candidates,
        "rejected": batch.rejected,
        "owners": batch.owners,
        "positions": [positions.of(i) for i in batch.owners],
    }


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: orjson.dumps(p).decode()[:40])
def test_both_ways_give_the_same_readings(payload: Any) -> None:
    assert shown(*fast(payload)) == shown(*general(payload))


def test_numbers_are_stored_as_sent() -> None:
    batch, positions, n = fast(
        [{"value": 20.5, "timestamp": 1764900000, "unit": "celsius", "quality": "poor"},
         {"value": 21}]
    )  # fmt: skip
    assert n == 2 and batch.total == 2 and not batch.rejected
    first, second = batch.candidates
    assert (first.metric, first.value, first.unit, first.quality) == (
        "temperature",
        20.5,
        "celsius",
        2,
    )
    assert first.ts.timestamp() == 1764900000
    assert second.ts.isoformat() == STAMP and second.value == 21.0  # no timestamp: received now
    assert [positions.of(i) for i in (0, 1)] == [0, 1]


def test_too_many_readings_are_refused_whole_on_both_paths() -> None:
    numbers = [{"value": 1.0}] * 5
    with pytest.raises(TooManyReadings):
        fast(numbers, limit=4)
    with pytest.raises(TooManyReadings):
        fast([*numbers[:4], {"value": "text"}, {"value": 1.0}], limit=4)


def test_malformed_json_is_refused_whole() -> None:
    batch, positions = Batch(), Positions()
    with pytest.raises(ValueError, match="Malformed JSON"):
        add_message(batch, positions, DEVICE, "temperature", b'[{"value": NaN}]', STAMP, 10)
    assert batch.total == 0 and not batch.candidates
