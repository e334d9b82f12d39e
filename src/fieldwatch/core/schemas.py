"""Shared shapes of request bodies."""

from __future__ import annotations

from typing import TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A request body: unknown fields are refused (422) and text is stripped of
    surrounding whitespace."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def parsed(model: type[M], body: object) -> M:
    """A body checked against ``model`` in a route that takes more than one shape: its
    problems answered like FastAPI's own (422, fields under ``body``)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
