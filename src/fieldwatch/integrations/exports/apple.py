"""Apple Health exports: ``export.zip`` (``apple_health_export/export.xml`` inside) or
the bare ``export.xml``, read as a stream.

The XML is parsed with defusedxml's ``iterparse``: the export's own DTD (element and
attribute declarations) is allowed, an entity declaration or an external reference is
refused (no billion laughs, no XXE), and each ``Record`` is dropped once read, so memory
stays flat whatever the export's size. Records of the types below become readings of
the metrics catalogue, converted to its units (pounds to kg, Apple's oxygen saturation
fraction 0.97 to 97 %, °F to °C, miles to m…), at their ``startDate`` with its UTC offset;
the ``sourceName`` is kept as the provenance. Sleep: each asleep interval of
``HKCategoryTypeIdentifierSleepAnalysis`` (not in bed, not awake) is a
``sleep_duration`` reading of its minutes at its start. Where sources overlap (the
iPhone and the Apple Watch both counting a walk), steps, distance and sleep count once,
by Apple's default order of sources (``overlap``).
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.exports.base import Chunk, Chunker, InvalidExport, sniff
from fieldwatch.integrations.exports.overlap import CUMULATIVE, Resolver, rank, resolved_chunks

ROOT = "HealthData"
MEMBER = "export.xml"
DATE = "%Y-%m-%d %H:%M:%S %z"

QUANTITIES = {
    "HKQuantityTypeIdentifierHeartRate": "heart_rate",
    "HKQuantityTypeIdentifierRestingHeartRate": "resting_heart_rate",
    "HKQuantityTypeIdentifierStepCount": "steps",
    "HKQuantityTypeIdentifierDistanceWalkingRunning": "distance",
    "HKQuantityTypeIdentifierOxygenSaturation": "spo2",
    "HKQuantityTypeIdentifierBodyMass": "body_weight",
    "HKQuantityTypeIdentifierRespiratoryRate": "respiratory_rate",
    "HKQuantityTypeIdentifierBloodPressureSystolic": "systolic_bp",
    "HKQuantityTypeIdentifierBloodPressureDiastolic": "diastolic_bp",
    "HKQuantityTypeIdentifierBodyTemperature": "body_temperature",
}
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
_STAGES = ("Asleep", "AsleepUnspecified", "AsleepCore", "AsleepDeep", "AsleepREM")
ASLEEP = {f"HKCategoryValueSleepAnalysis{v}" for v in _STAGES}


def _scale(factor: float) -> Callable[[float], float]:
    return lambda v: v * factor


_RATE = {"count/min": _scale(1), "count/s": _scale(60)}
#: Apple's unit → the catalogue's, per metric.
UNITS: dict[str, dict[str, Callable[[float], float]]] = {
    "heart_rate": _RATE, "resting_heart_rate": _RATE, "respiratory_rate": _RATE,
    "steps": {"count": _scale(1)},
    "distance": {"m": _scale(1), "km": _scale(1000), "cm": _scale(0.01), "mi": _scale(1609.344),
                 "ft": _scale(0.3048), "yd": _scale(0.9144)},
    # Apple writes oxygen saturation as a fraction with the unit "%".
    "spo2": {"%": lambda v: v * 100 if v <= 1 else v},
    "body_weight": {"kg": _scale(1), "g": _scale(0.001), "lb": _scale(0.45359237),
                    "st": _scale(6.35029318), "oz": _scale(0.028349523125)},
    "systolic_bp": {"mmHg": _scale(1), "kPa": _scale(7.50061683)},
    "diastolic_bp": {"mmHg": _scale(1), "kPa": _scale(7.50061683)},
    "body_temperature": {"degC": _scale(1), "degF": lambda v: (v - 32) * 5 / 9,
                         "K": lambda v: v - 273.15},
}  # fmt: skip


@contextlib.contextmanager
def open_xml(path: Path, max_unpacked: int) -> Iterator[IO[bytes]]:
    """The export's XML as a byte stream (from inside the zip, or the file itself)."""
    kind = sniff(path)
    if kind == "xml":
        with path.open("rb") as f:
            yield f
        return
    if kind != "zip":
        raise InvalidExport("Not an Apple Health export: send export.zip or export.xml.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidExport(f"The zip cannot be read ({exc}).") from None
    with archive:
        members = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == MEMBER]
        if not members:
            raise InvalidExport("The zip holds no export.xml (apple_health_export/export.xml).")
        member = min(members, key=lambda i: i.filename.count("/"))
        if member.file_size > max_unpacked:
            raise InvalidExport(f"export.xml unpacks to {member.file_size} bytes, over the "
                                f"{max_unpacked} byte limit.", limit=max_unpacked)  # fmt: skip
        with archive.open(member) as f:
            yield f


def _events(stream: IO[bytes]) -> Iterator[tuple[str, Element]]:
    try:
        yield from iterparse(stream, events=("start", "end"), forbid_dtd=False,
                             forbid_entities=True, forbid_external=True)  # fmt: skip
    except DefusedXmlException as exc:
        raise InvalidExport(f"The XML declares entities or external references, which are "
                            f"refused ({type(exc).__name__}).") from None  # fmt: skip
    except ParseError as exc:
        raise InvalidExport(f"The XML is not well-formed: {exc}.") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise InvalidExport(f"The zip cannot be read ({exc}).") from None


def check(path: Path, max_unpacked: int) -> None:
    """Refuse what is not an Apple Health export, before it is accepted: the DTD (where
    an entity would be declared) comes before the root element."""
    with open_xml(path, max_unpacked) as stream:
        for event, elem in _events(stream):
            if event == "start":
                if elem.tag != ROOT:
                    raise InvalidExport(f"Not an Apple Health export: the root element is "
                                        f"<{elem.tag}>, not <{ROOT}>.")  # fmt: skip
                return
    raise InvalidExport("The XML has no root element.")


def _end(elem: Element, start: datetime) -> datetime:
    try:
        return max(start, datetime.strptime(elem.get("endDate", ""), DATE))
    except ValueError:
        return start


def _sample(elem: Element) -> tuple[str, Sample] | None:
    kind = elem.get("type", "")
    try:
        start = datetime.strptime(elem.get("startDate", ""), DATE)
    except ValueError:
        return None
    if kind == SLEEP:
        if elem.get("value") not in ASLEEP:
            return None
        try:
            end = datetime.strptime(elem.get("endDate", ""), DATE)
        except ValueError:
            return None
        return "sleep_duration", Sample(start, round((end - start).total_seconds() / 60, 2))
    metric = QUANTITIES.get(kind)
    if metric is None:
        return None
    convert = UNITS[metric].get(elem.get("unit", ""))
    try:
        value = float(elem.get("value", ""))
    except ValueError:
        value = None
    if convert is None or value is None:
        return metric, Sample(start, None)  # refused as "no value": an unknown unit
    return metric, Sample(start, round(convert(value), 4))


def read(path: Path, max_unpacked: int) -> Generator[Chunk]:
    """The export's readings, chunk by chunk: in the order of the file, then steps,
    distance and sleep with their overlapping sources resolved (``overlap``)."""
    return resolved_chunks(
        path.parent, lambda chunker, resolver: _records(path, max_unpacked, chunker, resolver)
    )


def _records(path: Path, max_unpacked: int, chunker: Chunker,
             resolver: Resolver) -> Generator[Chunk]:  # fmt: skip
    depth = 0
    root: Element | None = None
    with open_xml(path, max_unpacked) as stream:
        for event, elem in _events(stream):
            if event == "start":
                root = elem if root is None else root
                depth += 1
                continue
            depth -= 1
            if depth != 1:
                continue
            if elem.tag == "Record":
                found = _sample(elem)
                source = elem.get("sourceName")
                if found is not None and found[0] in CUMULATIVE and found[1].value is not None:
                    metric, sample = found
                    end = _end(elem, sample.ts)
                    if metric == "sleep_duration":  # its value is its length: whole minutes
                        end = sample.ts + timedelta(minutes=float(sample.value or 0))
                    resolver.add(metric, sample.ts, end, float(sample.value or 0), source,
                                 rank(source, elem.get("device")))  # fmt: skip
                elif found is not None:
                    chunk = chunker.add(found[0], source, found[1])
                    if chunk is not None:
                        yield chunk
            if root is not None:
                root.clear()  # what was read is dropped: memory stays flat
