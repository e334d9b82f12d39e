"""Series (one per device and metric): finding them for a batch, creating new ones, and
the per-device limit on distinct metrics.

The limit counts a device's existing series plus the new metric names of a batch; the
readings of names beyond it are refused one by one (``{index, reason, metric}``) and the
rest of the batch is stored. The count is cached per device (``TelemetryHub.series_counts``):
series only go away with their device, which drops the entry. Counting and creating
happen under a per-device lock (an advisory lock on PostgreSQL, so across processes; the
hub's lock on SQLite), so concurrent batches cannot together pass the limit.
"""

from __future__ import annotations

import uuid
from typing import Any

from fieldwatch.telemetry.hub import SeriesInfo, TelemetryHub
from fieldwatch.telemetry.ingest.batch import Batch
from fieldwatch.telemetry.storage.repository import TelemetryRepository

Key = tuple[uuid.UUID, str]  # (device id, metric)


def kind_of(value: float | bool | str) -> str:
    if value is True or value is False:
        return "bool"
    return "text" if isinstance(value, str) else "number"


async def resolve_series(hub: TelemetryHub, workspace_id: uuid.UUID, batch: Batch) -> None:
    """Every candidate's series into the cache: those that exist are loaded, new ones
    created, up to the per-device limit on distinct metrics; the readings of metrics
    beyond it are moved to the rejections."""
    cache = hub.series
    missing: dict[Key, dict[str, Any]] = {}
    # A device's readings usually share its id object: each series is looked up once,
    # not once per reading (a UUID's hash is computed in Python on every lookup).
    seen: set[tuple[int, str]] = set()
    for _p, device_id, metric, _ts, value, unit, _q in batch.candidates:
        ident = (id(device_id), metric)
        if ident in seen:
            continue
        seen.add(ident)
        key = (device_id, metric)
        if key not in cache and key not in missing:  # the first reading names it
            missing[key] = {
                "workspace_id": workspace_id, "device_id": device_id, "metric": metric,
                "kind": kind_of(value), "unit": unit,
            }  # fmt: skip
    if not missing:
        return
    # In a transaction of its own: a series may exist without readings, and the
    # readings are written by the group-commit writer.
    async with hub.sessionmaker() as session:
        repo = TelemetryRepository(session)
        for s in await repo.series_for(list(missing)):
            cache[(s.device_id, s.metric)] = SeriesInfo(s.id, s.kind, s.unit, s.last_ts)
            del missing[(s.device_id, s.metric)]
        if not missing:
            return
        if session.bind.dialect.name == "postgresql":
            refused = await _create_series(hub, repo, missing)
        else:
            async with hub.series_lock:
                refused = await _create_series(hub, repo, missing)
    if refused:
        limit = hub.settings.max_metrics_per_device
        batch.drop(refused, f"the device has reached its limit of {limit} metrics")


async def _create_series(
    hub: TelemetryHub, repo: TelemetryRepository, new: dict[Key, dict[str, Any]]
) -> set[Key]:
    """Create the new series that fit each device's limit, counting the device's
    existing series under a lock; commit. Returns those refused."""
    limit = hub.settings.max_metrics_per_device
    counts = hub.series_counts
    refused = {k for k in new if counts.get(k[0], 0) >= limit}  # full: nothing to count
    devices = list({k[0] for k in new if k not in refused})
    if devices:
        await repo.lock_series_of(devices)
        counts.update(await repo.count_series(devices))
    admitted: list[dict[str, Any]] = []
    for key, row in new.items():  # in the batch's order: the first names get in
        if key in refused or counts[key[0]] >= limit:
            refused.add(key)
        else:
            counts[key[0]] += 1
            admitted.append(row)
    if admitted:
        await repo.ensure_series(admitted)
        counts.update(await repo.count_series(devices))  # some may have existed
    await repo.session.commit()
    cache = hub.series
    for s in await repo.series_for([(r["device_id"], r["metric"]) for r in admitted]):
        cache[(s.device_id, s.metric)] = SeriesInfo(s.id, s.kind, s.unit, s.last_ts)
    return refused
