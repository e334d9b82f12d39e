"""Shared shapes of request bodies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A request body: unknown fields are refused (422) and text is stripped of
    surrounding whitespace."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
