"""HTTP: bulk upload of health exports (Apple Health, Android Health Connect)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from fieldwatch.auth.dependencies import Operator
from fieldwatch.core.components import SettingsDep
from fieldwatch.db.dependencies import WriteUow
from fieldwatch.integrations.exports.base import exports_dir
from fieldwatch.integrations.exports.service import ExportKind, ExportService
from fieldwatch.integrations.exports.upload import read_export_upload
from fieldwatch.integrations.sync.schemas import SyncRunRead

#: Mounted under ``/api/v1/integrations`` by the integrations router.
router = APIRouter()


@router.post("/{kind}/upload", response_model=SyncRunRead, status_code=202)
async def upload_export(
    kind: ExportKind, request: Request, principal: Operator, uow: WriteUow, settings: SettingsDep
):
    """Upload a health export as `multipart/form-data`: `file` (Apple Health's
    `export.zip` or `export.xml`; Health Connect's exported `.zip` or `.db`) and
    `device_id` (a device of this workspace with that integration type). The file is
    checked (an XML declaring entities is refused, 422) and kept; the answer is the
    queued `bulk` sync run reading it (follow it in `/sync/history`, retry it there).
    Readings already stored are duplicates: the same export twice adds nothing."""
    form = await read_export_upload(request, exports_dir(settings),
                                    settings.health_export_max_bytes)  # fmt: skip
    return await ExportService(uow, settings).accept(principal, kind, form)
