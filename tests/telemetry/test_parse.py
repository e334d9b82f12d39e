"""The fast (msgspec) and the general decoding paths of seed 002 uploads agree."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from fieldwatch.telemetry.ingest.parse import fast_device_data, parse_device_data

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEVICE = uuid.uuid4()


def both(body: dict) -> tuple:
    raw = json.dumps(body).encode()
    fast = fast_device_data(raw, DEVICE, NOW)
    slow = parse_device_data(json.loads(raw), DEVICE, NOW)
    return fast, slow


def test_plain_uploads_decode_the_same_either_way():
    body = {
        "data_type": "temperature",
        "timestamp": "2026-11-22T10:00:00+02:00",
        "metadata": {"source": "device", "accuracy": 0.95},
        "values": [
            {"timestamp": "2026-11-22T09:00:00Z", "value": 21.5, "unit": "celsius",
             "quality": "good"},
            {"timestamp": "2026-11-22T09:01:00", "value": 22},  # naive: UTC; an int
            {"timestamp": "2026-11-22T11:02:00.123456+02:00", "value": -3.25, "quality": "poor"},
            {"value": 1e-3},  # the body's timestamp
        ],
    }  # fmt: skip
    upload, slow = both(body)
    assert upload is not None
    fast = upload.batch()
    assert fast.candidates == slow.candidates and fast.total == slow.total == 4
    assert upload.oldest == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert upload.newest == datetime(2026, 11, 22, 9, 2, 0, 123456, tzinfo=UTC)
    assert [c[3] for c in fast.candidates] == [
        datetime(2026, 11, 22, 9, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 9, 1, tzinfo=UTC),
        datetime(2026, 11, 22, 9, 2, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
    ]
    assert all(type(c[4]) is float for c in fast.candidates)


def test_anything_unusual_goes_the_general_way():
    unusual = [
        {"data_type": "t", "values": [{"value": True}]},
        {"data_type": "t", "values": [{"value": "on"}]},
        {"data_type": "t", "values": [{"value": None}]},
        {"data_type": "t", "values": [{"value": 1, "timestamp": 1694678400}]},
        {"data_type": "t", "values": [{"value": 1, "quality": "meh"}]},
        {"data_type": "t", "values": [{"value": 1, "unit": "x" * 40}]},
        {"data_type": "t", "values": [{"value": 1e999}]},  # infinity
        {"data_type": "t", "values": []},
        {"data_type": "", "values": [{"value": 1}]},
        {"data_type": "t", "value": 1},
        ["not", "an", "object"],
    ]
    for body in unusual:
        assert fast_device_data(json.dumps(body).encode(), DEVICE, NOW) is None, body
    assert fast_device_data(b'{"data_type": "t", "values": [{"value": NaN}]}', DEVICE, NOW) is None
