"""One error hierarchy, rendered as RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fieldwatch.core.context import current_request_id
from fieldwatch.core.observability import METRICS
from fieldwatch.db.faults import RETRY_AFTER_S, outages

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:fieldwatch:problem:"


class AppError(Exception):
    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(AppError):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(AppError):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **extra)


class Forbidden(AppError):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(AppError):
    status, slug, title = 404, "not-found", "Not found"


T = TypeVar("T")


def found_in_workspace(
    found: T | None, what: str, ident: object, error: type[NotFound] = NotFound
) -> T:
    """What a lookup scoped to the caller's workspace ``found``, or a 404 saying there is
    no such ``what`` here: another workspace's object is not found either, never
    forbidden (nothing tells that it exists)."""
    if found is None:
        raise error(f"No {what} {ident} in this workspace.")
    return found


class Conflict(AppError):
    status, slug, title = 409, "conflict", "Conflict"


class ConcurrentModification(Conflict):
    slug, title = "concurrent-modification", "Changed by someone else"


class PayloadTooLarge(AppError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(AppError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(AppError):
    status, slug, title = 422, "validation-error", "Invalid request"


class TooManyRequests(AppError):
    status, slug, title = 429, "too-many-requests", "Too many requests"


class ServiceUnavailable(AppError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    request_id = current_request_id()
    if request_id and "request_id" not in body:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        where, rest = parts[0], parts[1:]
        return ".".join(rest) if rest and where == "body" else ".".join([where, *rest])
    return ".".join(parts)


def validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        if isinstance(ctx.get("field"), str):  # a model-level check about one field
            loc = (*loc, ctx["field"])
        message = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            message = "unknown field; it cannot be set here"
        out.append({"field": _field_name(loc), "message": message, "type": err.get("type")})
    return out


#: Renders a problem document as a page for a path prefix (the console's HTML pages).
PageRenderer = Callable[[Request, dict[str, Any]], Response]


def render_problems_as_pages(app: FastAPI, prefix: str, renderer: PageRenderer) -> None:
    """Answer errors under ``prefix`` with ``renderer`` instead of a problem document."""
    app.state.problem_pages = (prefix, renderer)


def answer(
    request: Request, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """A problem document, or the page that shows it where one is registered."""
    pages = getattr(request.app.state, "problem_pages", None)
    if pages is not None and request.url.path.startswith(pages[0]):
        response = pages[1](request, body)
        response.headers.update(headers or {})
        return response
    return problem_response(body, headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        if exc.status == 503:  # the write path is saturated
            METRICS.of(request.app).unavailable.labels("saturated").inc()
        return answer(request, exc.to_problem(request.url.path), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(list(exc.errors()))
        fields = ", ".join(e["field"] for e in errors) or "request"
        err = ValidationFailed(f"Invalid value for: {fields}", errors=errors)
        return answer(request, err.to_problem(request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Authentication required"}
        body = {
            "type": "about:blank",
            "title": titles.get(exc.status_code, "HTTP error"),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "instance": request.url.path,
        }
        return answer(request, body, dict(exc.headers or {}))

    # Errors from the database, its drivers and the network are answered here, in the
    # exception middleware: the answer is sent, the connection stays open, and nothing
    # is re-raised to the server (which would log a second traceback and hang up).
    for kind in (
        SQLAlchemyError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.InternalClientError,
        sqlite3.Error,
        OSError,
        RedisError,
    ):
        app.add_exception_handler(kind, _infrastructure)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> Response:
        return await _infrastructure(request, exc)


async def _infrastructure(request: Request, exc: Exception) -> Response:
    path = request.url.path
    if outages.record(exc, f"{request.method} {path}"):
        METRICS.of(request.app).unavailable.labels("database").inc()
        err: AppError = ServiceUnavailable(
            "The database is unavailable at the moment; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
        return answer(request, err.to_problem(path), err.headers)
    if isinstance(exc, IntegrityError):
        err = integrity_conflict(exc)
        return answer(request, err.to_problem(path), err.headers)
    if isinstance(exc, DataError):  # a value the column cannot hold (range, length)
        err = ValidationFailed("A value is out of the range that can be stored.")
        return answer(request, err.to_problem(path), err.headers)
    log.exception("unhandled error on %s %s", request.method, path)
    return answer(request, AppError("An unexpected error occurred.").to_problem())


def _constraint_fields(exc: IntegrityError) -> tuple[str, list[str]]:
    """(kind, columns) of a constraint violation, from PostgreSQL's error detail
    (``Key (workspace_id, email)=(…) already exists.``) or SQLite's message
    (``UNIQUE constraint failed: users.email``)."""
    orig = exc.orig
    cause = getattr(orig, "__cause__", None) or orig
    sqlstate = getattr(cause, "sqlstate", None)
    text = str(getattr(cause, "detail", None) or cause or "")
    kind = {"23505": "unique", "23503": "foreign_key"}.get(str(sqlstate), "")
    if not kind:
        lowered = str(orig).lower()
        kind = (
            "unique" if "unique" in lowered else "foreign_key" if "foreign key" in lowered else ""
        )
    columns: list[str] = []
    if text.startswith("Key (") and ")=" in text:
        columns = [c.strip() for c in text[5 : text.index(")=")].split(",")]
    elif ":" in str(orig):
        tail = str(orig).split(":", 1)[1].split("\n")[0]
        columns = [c.strip().split(".")[-1] for c in tail.split(",") if c.strip()]
    return kind, [c for c in columns if c and c != "workspace_id"] or columns


def integrity_conflict(exc: IntegrityError) -> AppError:
    """A constraint the database enforced (two requests raced past the service's own
    check): a 409 naming the field, never a 500."""
    kind, columns = _constraint_fields(exc)
    field = ", ".join(columns) or "a unique field"
    if kind == "unique":
        return Conflict(
            f"Another record already has this {field}.",
            errors=[{"field": c, "message": "already in use", "type": "unique"} for c in columns],
        )
    if kind == "foreign_key":
        return Conflict(f"The {field} refers to something that no longer exists.")
    return Conflict("The change conflicts with the stored data; reload and retry.")
