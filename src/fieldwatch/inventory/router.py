from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.auth.principal import Principal
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from fieldwatch.core.paging import BeforeId, BeforeIdPage
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import Action
from fieldwatch.devices.schemas import DeviceRead
from fieldwatch.inventory.importer import DeviceImporter, parse_csv, parse_json
from fieldwatch.inventory.schemas import (
    DeployRequest,
    DeviceLogRead,
    ImportResult,
    InventorySummary,
    MaintenanceRequest,
    RecallRequest,
    ReserveRequest,
    RetireRequest,
    StatusChange,
)
from fieldwatch.inventory.service import InventoryService

router = APIRouter(prefix="/api/v1", tags=["inventory"])

IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The import is larger than the {limit} byte limit.")


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The import is larger than the {limit} byte limit.")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The file is not UTF-8 (byte {exc.start}); save it as UTF-8.") from exc


def _parse(kind: str, raw: bytes) -> list[dict[str, Any]]:
    if kind == "json":
        try:
            return parse_json(json.loads(_decode(raw)))
        except json.JSONDecodeError as exc:
            raise BadRequest(f"Malformed JSON at line {exc.lineno} column {exc.colno}.") from exc
        except RecursionError as exc:
            raise BadRequest("The JSON is nested too deeply.") from exc
    return parse_csv(_decode(raw))


async def _import_rows(request: Request, limit: int) -> list[dict[str, Any]]:
    _check_declared_size(request, limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise BadRequest("Send the file in a form field named 'file'.")
        raw = await upload.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"The import is larger than the {limit} byte limit.")
        name = (upload.filename or "").lower()
        is_json = name.endswith(".json") or (upload.content_type or "").endswith("json")
        return _parse("json" if is_json else "csv", raw)
    raw = await _read_limited(request, limit)
    if content_type in {"application/json"}:
        return _parse("json", raw)
    if content_type in {"text/csv", "application/csv", "text/plain"}:
        return _parse("csv", raw)
    raise UnsupportedMediaType(
        "Send text/csv, a JSON array (application/json) or a multipart upload (field 'file')."
    )


@router.post("/devices/import", response_model=ImportResult, openapi_extra=IMPORT_BODY)
async def import_devices(
    request: Request,
    principal: Operator,
    settings: SettingsDep,
    uow: WriteUow,
    dry_run: Annotated[bool, Query(description="Check every row, change nothing")] = False,
):
    """Create or update devices in bulk (matched by serial number). Every row gets a
    result; good rows are kept even when others fail. With ``dry_run`` nothing is saved."""
    rows = await _import_rows(request, settings.max_import_bytes)
    if len(rows) > settings.max_import_rows:
        raise PayloadTooLarge(
            f"{len(rows)} rows; one import takes at most {settings.max_import_rows}."
        )
    result = await DeviceImporter(uow).run(principal, rows, dry_run=dry_run)
    if dry_run:
        await uow.rollback()  # nothing left to commit
    return result


async def _act(
    principal: Principal, uow: UnitOfWork, device_id: uuid.UUID, action: Action, body: Any
) -> Any:
    return await InventoryService(uow).perform(
        principal,
        device_id,
        action,
        location=getattr(body, "location", None),
        notes=body.notes,
        claimed_status=body.status,
    )


@router.put("/devices/{device_id}/deploy", response_model=DeviceRead)
async def deploy(device_id: uuid.UUID, body: DeployRequest, principal: Operator, uow: WriteUow):
    """Deploy to the field (from in_stock, reserved or maintenance); sets deploy_date."""
    return await _act(principal, uow, device_id, Action.deployed, body)


@router.put("/devices/{device_id}/recall", response_model=DeviceRead)
async def recall(
    device_id: uuid.UUID, principal: Operator, uow: WriteUow, body: RecallRequest | None = None
):
    """Bring a deployed or maintenance device back to stock; ``location`` is the
    warehouse it returns to."""
    return await _act(principal, uow, device_id, Action.recalled, body or RecallRequest())


@router.put("/devices/{device_id}/maintenance", response_model=DeviceRead)
async def maintenance(
    device_id: uuid.UUID, principal: Operator, uow: WriteUow, body: MaintenanceRequest | None = None
):
    return await _act(principal, uow, device_id, Action.maintenance, body or MaintenanceRequest())


@router.put("/devices/{device_id}/reserve", response_model=DeviceRead)
async def reserve(
    device_id: uuid.UUID, principal: Operator, uow: WriteUow, body: ReserveRequest | None = None
):
    return await _act(principal, uow, device_id, Action.reserved, body or ReserveRequest())


@router.put("/devices/{device_id}/retire", response_model=DeviceRead)
async def retire(
    device_id: uuid.UUID, principal: Operator, uow: WriteUow, body: RetireRequest | None = None
):
    """Retire for good; the device's agent tokens are revoked."""
    return await _act(principal, uow, device_id, Action.retired, body or RetireRequest())


@router.put("/devices/{device_id}/status", response_model=DeviceRead)
async def change_status(
    device_id: uuid.UUID, body: StatusChange, principal: Operator, uow: WriteUow
):
    return await InventoryService(uow).change_status(
        principal, device_id, body.status, location=body.location, notes=body.notes
    )


@router.get("/devices/{device_id}/logs", response_model=BeforeIdPage[DeviceLogRead])
async def device_logs(
    device_id: uuid.UUID,
    principal: Viewer,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: BeforeId = None,
):
    """The device's audit trail, newest first."""
    rows = await InventoryService(uow).logs_for(
        principal, device_id, limit=limit, before_id=before_id
    )
    items = [DeviceLogRead.model_validate(r) for r in rows]
    return BeforeIdPage[DeviceLogRead](
        items=items, next_before_id=items[-1].id if len(items) == limit else None
    )


@router.get("/inventory/summary", response_model=InventorySummary)
async def inventory_summary(principal: Viewer, uow: UowDep):
    """Counts by status, and by type and location within each status."""
    return await InventoryService(uow).summary(principal)
