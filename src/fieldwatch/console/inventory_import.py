"""The inventory's CSV import: upload a file, see what a dry run would do row by row,
then commit it (the API's ``POST /devices/import``, through ``DeviceImporter``).

No state is kept on the server between the two steps: the preview carries the file's
text in a hidden field of its "Commit import" form, and the commit checks it again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.pages import Operator, page_context, render
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.errors import AppError, BadRequest, PayloadTooLarge
from fieldwatch.core.settings import Settings
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.inventory.importer import DeviceImporter, parse_csv
from fieldwatch.inventory.schemas import ImportResult

router = APIRouter(include_in_schema=False)

PATH = "/console/inventory/import"
#: The most row results a page lists (all the counts cover every row).
MAX_SHOWN = 1000


async def _declared_size(request: Request, settings: SettingsDep) -> None:
    """Refuse a body that says it is too large before it is read (the commit sends the
    file's text as a form field: percent-encoded, up to three times its size)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > 3 * settings.max_import_bytes + 65536:
        raise PayloadTooLarge(
            f"The import is larger than the {settings.max_import_bytes} byte limit."
        )


SizeChecked = Depends(_declared_size)


def _too_large(settings: Settings) -> PayloadTooLarge:
    return PayloadTooLarge(f"The import is larger than the {settings.max_import_bytes} byte limit.")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The file is not UTF-8 (byte {exc.start}); save it as UTF-8.") from exc


async def _run(
    uow: UnitOfWork, user: ConsoleUser, text: str, settings: Settings, *, dry_run: bool
) -> ImportResult:
    if len(text.encode()) > settings.max_import_bytes:
        raise PayloadTooLarge(
            f"The import is larger than the {settings.max_import_bytes} byte limit."
        )
    rows = parse_csv(text)
    if len(rows) > settings.max_import_rows:
        raise PayloadTooLarge(
            f"{len(rows)} rows; one import takes at most {settings.max_import_rows}."
        )
    return await DeviceImporter(uow).run(user.principal, rows, dry_run=dry_run)


async def _page(
    request: Request, user: ConsoleUser, status_code: int = 200, **extra: Any
) -> Response:
    context = await page_context(user, "inventory")
    context.update(max_shown=MAX_SHOWN, **extra)
    result: ImportResult | None = extra.get("result")
    if result is not None:  # every row, or when there are too many, the failed ones
        many = result.total > MAX_SHOWN
        listed = [r for r in result.rows if r.status == "error"] if many else result.rows
        context.update(listed=listed[:MAX_SHOWN], only_errors=many)
    return render(request, "inventory_import.html", context, status_code=status_code)


def _failed(exc: AppError) -> dict[str, Any]:
    return {"problem": exc.to_problem(), "status_code": exc.status}


@router.get(PATH)
async def import_page(request: Request, user: Operator) -> Response:
    return await _page(request, user)


@router.post(PATH, dependencies=[SizeChecked, CsrfChecked])
async def dry_run(request: Request, user: Operator, uow: UowDep, settings: SettingsDep) -> Response:
    """Check the uploaded file: what each row would do; nothing is saved."""
    upload = (await request.form()).get("file")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise BadRequest("Choose a CSV file to import.")
        raw = await upload.read(settings.max_import_bytes + 1)
        text = _decode(raw)
        result = await _run(uow, user, text, settings, dry_run=True)
    except AppError as exc:
        return await _page(request, user, **_failed(exc))
    finally:
        await uow.rollback()  # a dry run: nothing to keep
    return await _page(request, user, result=result, content=text, filename=upload.filename)


@router.post(f"{PATH}/commit", dependencies=[SizeChecked, CsrfChecked])
async def commit(
    request: Request, user: Operator, uow: WriteUow, settings: SettingsDep
) -> Response:
    """Import the file the dry run checked (its text comes back in the form)."""
    form = await request.form()
    text, filename = str(form.get("content") or ""), str(form.get("filename") or "")
    try:
        result = await _run(uow, user, text, settings, dry_run=False)
    except AppError as exc:
        await uow.rollback()
        return await _page(request, user, **_failed(exc))
    return await _page(request, user, result=result, filename=filename)
