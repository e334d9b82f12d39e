"""The API's documentation pages, served from the package itself.

Swagger UI (``/docs``) and ReDoc (``/redoc``) load their scripts and styles from
``/static/vendor/`` — files shipped inside the package (see ``static/vendor/README.md``
for their versions, licences and checksums) — so the docs work on a site without
internet access. Nothing on these pages is fetched from another origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_URL = "/static"
_SWAGGER = f"{STATIC_URL}/vendor/swagger-ui"
_REDOC = f"{STATIC_URL}/vendor/redoc"

router = APIRouter(include_in_schema=False)


def _openapi_url(request: Request) -> str:
    root = request.scope.get("root_path", "")
    return f"{root}{request.app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} — API",
        swagger_js_url=f"{root}{_SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{_SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{root}{_SWAGGER}/favicon-32x32.png",
        # No badge that asks swagger.io to validate the schema: the page stays offline.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} — API reference",
        redoc_js_url=f"{root}{_REDOC}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{_SWAGGER}/favicon-32x32.png",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """Mount the package's static files and add the two documentation pages."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
