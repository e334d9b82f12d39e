"""Bulk import of devices from CSV or JSON: a result for every row, good rows kept.

Rows are matched to existing devices by serial number (within the workspace): a known
serial updates that device, an unknown one (or none) creates a device. New devices are
written with one bulk insert per chunk; a dry run does everything and rolls back.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import BadRequest, ValidationFailed
from fieldwatch.core.errors import validation_errors as pydantic_errors
from fieldwatch.core.ids import new_id
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices import events
from fieldwatch.devices.errors import DuplicateSerial
from fieldwatch.devices.lifecycle import Action, DeviceStatus, allowed_targets
from fieldwatch.devices.log import diff, log_row
from fieldwatch.devices.models import Device
from fieldwatch.devices.repository import DeviceLogRepository, DeviceRepository
from fieldwatch.devices.schemas import DeviceCreate, DeviceUpdate
from fieldwatch.devices.service import SNAPSHOT_FIELDS, DeviceService
from fieldwatch.inventory.schemas import ImportResult, ImportRowResult
from fieldwatch.inventory.service import InventoryService

WRITABLE = set(DeviceCreate.model_fields)
ALIASES = {"device_type": "type", "device_name": "name"}
#: Columns our own export writes that an import ignores (so export → import round-trips).
IGNORED = {"id", "workspace_id", "deploy_date", "last_seen", "created_at", "updated_at", "version"}
CHUNK = 1000

Progress = Callable[[int, int], None]


def parse_csv(text: str) -> list[dict[str, Any]]:
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise BadRequest("The CSV is empty; the first line must name the columns.")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise BadRequest(f"Unreadable CSV header: {exc}") from exc
    columns = [_column(h) for h in header]
    _check_columns(columns)
    rows: list[dict[str, Any]] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(columns):
                problem = f"has {len(cells)} cells, the header has {len(columns)}"
                rows.append({"__error__": problem, "__line__": reader.line_num})
                continue
            row = _csv_row(dict(zip(columns, cells, strict=True)))
            row["__line__"] = reader.line_num
            rows.append(row)
    except csv.Error as exc:
        raise BadRequest(f"Unreadable CSV at line {reader.line_num}: {exc}") from exc
    return rows


def parse_json(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise BadRequest("A JSON import is an array of device objects.")
    rows: list[dict[str, Any]] = []
    columns: set[str] = set()
    for item in data:
        if not isinstance(item, dict):
            rows.append({"__error__": "is not a JSON object"})
            continue
        row = {_column(k): v for k, v in item.items()}
        columns.update(row)
        rows.append(row)
    _check_columns(list(columns))
    return rows


def _column(name: str) -> str:
    key = name.strip().lower().replace(" ", "_")
    return ALIASES.get(key, key)


def _check_columns(columns: list[str]) -> None:
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ValidationFailed(
            f"Column(s) named twice: {', '.join(repeated)}.",
            errors=[{"field": c, "message": "column named twice"} for c in repeated],
        )
    unknown = sorted({c for c in columns if c not in WRITABLE | IGNORED | {"status"}})
    if unknown:
        raise ValidationFailed(
            f"Unknown column(s): {', '.join(unknown)}. "
            f"Known: {', '.join(sorted(WRITABLE))}, status.",
            errors=[{"field": c, "message": "unknown column"} for c in unknown],
        )
    if "name" not in columns and "type" not in columns and "serial_number" not in columns:
        raise ValidationFailed("An import needs at least the columns name and type.")


def _csv_row(raw: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in raw.items():
        value = value.strip()
        if value == "" or key in IGNORED:
            continue
        if key == "capabilities":
            row[key] = [c.strip() for c in value.replace("|", ";").split(";") if c.strip()]
        elif key == "tags":  # a tag may hold "|", never ";"
            row[key] = [t.strip() for t in value.split(";") if t.strip()]
        elif key == "specs":
            try:
                row[key] = json.loads(value)
            except json.JSONDecodeError:
                row["__error__"] = "specs is not valid JSON"
        else:
            row[key] = value
    return row


class DeviceImporter:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.devices = DeviceRepository(uow.session)
        self.logs = DeviceLogRepository(uow.session)
        self.registry = DeviceService(uow)
        self.inventory = InventoryService(uow)

    async def run(
        self,
        principal: Principal,
        rows: list[dict[str, Any]],
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Apply the rows; the caller commits (or, for a dry run, rolls back)."""
        results: list[ImportRowResult] = []
        seen: dict[str, int] = {}
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            results.extend(await self._chunk(principal, chunk, start, seen))
            if progress:
                progress(min(start + CHUNK, len(rows)), len(rows))
        counts = {s: sum(1 for r in results if r.status == s) for s in ("created", "updated")}
        return ImportResult(
            dry_run=dry_run,
            total=len(results),
            created=counts["created"],
            updated=counts["updated"],
            unchanged=sum(1 for r in results if r.status == "unchanged"),
            failed=sum(1 for r in results if r.status == "error"),
            rows=results,
        )

    async def _chunk(
        self, principal: Principal, chunk: list[dict[str, Any]], start: int, seen: dict[str, int]
    ) -> list[ImportRowResult]:
        serials = [str(r["serial_number"]).strip() for r in chunk if r.get("serial_number")]
        existing = await self.devices.by_serials(principal.workspace_id, serials)
        out: list[ImportRowResult] = []
        new_devices: list[dict[str, Any]] = []
        new_logs: list[dict[str, Any]] = []
        for offset, raw in enumerate(chunk):
            line = raw.pop("__line__", None)
            result = await self._row(principal, raw, start + offset + 1, seen, existing,
                                     new_devices, new_logs)  # fmt: skip
            result.line = line
            out.append(result)
        await self.devices.insert_many(new_devices)
        await self.logs.append_many(new_logs)
        for row in new_devices:
            self.uow.emit(events.device_event(events.DEVICE_CREATED, Device(**row), imported=True))
        return out

    async def _row(
        self,
        principal: Principal,
        raw: dict[str, Any],
        number: int,
        seen: dict[str, int],
        existing: dict[str, Device],
        new_devices: list[dict[str, Any]],
        new_logs: list[dict[str, Any]],
    ) -> ImportRowResult:
        serial = str(raw.get("serial_number") or "").strip() or None
        if "__error__" in raw:
            return _error(number, serial, "row", f"row {raw['__error__']}")
        if serial is not None and serial in seen:
            return _error(
                number, serial, "serial_number", f"repeats row {seen[serial]} of this file"
            )
        if serial is not None:
            seen[serial] = number
        if serial is not None and serial in existing:
            return await self._update(principal, existing[serial], raw, number)
        return self._create(principal, raw, number, new_devices, new_logs)

    def _create(
        self,
        principal: Principal,
        raw: dict[str, Any],
        number: int,
        new_devices: list[dict[str, Any]],
        new_logs: list[dict[str, Any]],
    ) -> ImportRowResult:
        fields = {k: v for k, v in raw.items() if k != "status"}
        try:
            data = DeviceCreate.model_validate(fields)
            status = DeviceStatus(raw.get("status") or DeviceStatus.in_stock)
        except ValidationError as exc:
            return ImportRowResult(
                row=number,
                status="error",
                serial_number=raw.get("serial_number"),
                errors=pydantic_errors(list(exc.errors())),
            )
        except ValueError:
            return _error(number, raw.get("serial_number"), "status", _bad_status(raw["status"]))
        if status == DeviceStatus.deployed and not data.location:
            return _error(number, data.serial_number, "location", "required for a deployed device")
        now = utcnow()
        row = {
            "id": new_id(),
            "workspace_id": principal.workspace_id,
            "status": status.value,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "deploy_date": now.date() if status == DeviceStatus.deployed else None,
            **data.model_dump(),
        }
        new_devices.append(row)
        new_logs.append(
            log_row(
                workspace_id=principal.workspace_id,
                device_id=row["id"],
                action=Action.imported,
                actor=principal,
                new_status=status.value,
                changes=diff({}, {k: row[k] for k in SNAPSHOT_FIELDS}),
            )
        )
        return ImportRowResult(
            row=number, status="created", device_id=row["id"], serial_number=data.serial_number
        )

    async def _update(
        self, principal: Principal, device: Device, raw: dict[str, Any], number: int
    ) -> ImportRowResult:
        fields = {k: v for k, v in raw.items() if k != "status"}
        try:
            data = DeviceUpdate.model_validate(fields)
            status = DeviceStatus(raw["status"]) if raw.get("status") else None
        except ValidationError as exc:
            return ImportRowResult(
                row=number,
                status="error",
                serial_number=device.serial_number,
                device_id=device.id,
                errors=pydantic_errors(list(exc.errors())),
            )
        except ValueError:
            return _error(number, device.serial_number, "status", _bad_status(raw["status"]))
        # Check everything that can refuse the row before changing anything, so a refused
        # row leaves no partial change behind (no savepoints needed on any backend).
        location = data.location if "location" in data.model_fields_set else device.location
        if status is not None and status != device.status:
            if status not in allowed_targets(DeviceStatus(device.status)):
                return _error(number, device.serial_number, "status", _refused(device, status))
            if status == DeviceStatus.deployed and not location:
                return _error(number, device.serial_number, "location", "required when deploying")
        before = device.version
        try:
            await self.registry.update_loaded(principal, device, data)
        except DuplicateSerial as exc:
            return _error(number, device.serial_number, "serial_number", exc.detail, device.id)
        if status is not None and status != device.status:
            await self.inventory.change_status_loaded(
                principal, device, status, location=location, notes="import"
            )
        changed = device.version != before
        return ImportRowResult(
            row=number,
            status="updated" if changed else "unchanged",
            device_id=device.id,
            serial_number=device.serial_number,
        )


def _refused(device: Device, status: DeviceStatus) -> str:
    allowed = ", ".join(a.value for a in allowed_targets(DeviceStatus(device.status))) or "none"
    return f"cannot go from {device.status} to {status.value} (allowed: {allowed})"


def _bad_status(value: Any) -> str:
    return f"{value!r} is not a status; use one of {', '.join(s.value for s in DeviceStatus)}"


def _error(
    number: int, serial: Any, field: str, message: str, device_id: Any = None
) -> ImportRowResult:
    return ImportRowResult(
        row=number,
        status="error",
        serial_number=serial,
        device_id=device_id,
        errors=[{"field": field, "message": message}],
    )
