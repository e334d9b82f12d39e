"""The console's device page: the control section (loaded into the page by htmx)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
