"""The device group forms of the console: a submitted form read into the API's request
shapes (``DeviceGroupCreate``/``DeviceGroupUpdate``), the messages by field of a refused
one, and a dynamic group's filter said in words."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fieldwatch.core.errors import validation_errors

TEXT_FIELDS = ("name", "description", "type", "location", "hardware_version")
#: The filter's fields, in the order the form and the summary show them.
FILTER_FIELDS = ("type", "location", "status", "firmware_version", "hardware_version", "tags")
LIST_FIELDS = ("firmware_version", "tags")  # several values, separated by ";"


class FormProblem(Exception):
    """A form refused: the messages by form field ("" for the whole form)."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, str] = {}
        for e in errors:
            field = str(e.get("field") or "").removeprefix("filter.").split(".")[0]
            self.fields.setdefault(field, str(e.get("message")))


def form_values(form: Any) -> dict[str, Any]:
    """The form as typed (shown again when refused): text stripped, statuses a list."""
    values: dict[str, Any] = {}
    for name in (*TEXT_FIELDS, *LIST_FIELDS, "kind"):
        raw = form.get(name)
        values[name] = raw.strip() if isinstance(raw, str) else ""
    values["status"] = [s for s in form.getlist("status") if isinstance(s, str) and s]
    return values


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


def filter_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The filter fields given, as the API's ``filter`` object."""
    out: dict[str, Any] = {}
    for name in FILTER_FIELDS:
        value = values.get(name)
        if name in LIST_FIELDS:
            value = _split(value or "")
        if value:
            out[name] = value
    return out


def body_of(values: Mapping[str, Any], *, create: bool, dynamic: bool) -> dict[str, Any]:
    """The API's request body: the filter only for a dynamic group (a static group's
    form has no filter fields)."""
    body: dict[str, Any] = {"name": values["name"], "description": values["description"] or None}
    if create:
        body["kind"] = values["kind"] or "static"
    if dynamic:
        body["filter"] = filter_of(values)
    return body


M = TypeVar("M", bound=BaseModel)


def checked(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = validation_errors(list(exc.errors()))
        raise FormProblem("Check the highlighted fields.", errors) from None


def stored_values(group: Any) -> dict[str, Any]:
    """A group's fields as its edit form shows them."""
    flt = group.filter or {}
    return {
        "name": group.name, "description": group.description or "", "kind": group.kind,
        "type": flt.get("type", ""), "location": flt.get("location", ""),
        "status": flt.get("status", []), "hardware_version": flt.get("hardware_version", ""),
        "firmware_version": "; ".join(flt.get("firmware_version", [])),
        "tags": "; ".join(flt.get("tags", [])),
    }  # fmt: skip


LABELS = {
    "type": "type", "location": "location", "status": "status",
    "firmware_version": "firmware", "hardware_version": "hardware", "tags": "tags",
}  # fmt: skip


def summary(flt: Mapping[str, Any] | None) -> str:
    """A dynamic group's filter in words: ``type pump · status deployed or maintenance ·
    tags roof and north``."""
    parts = []
    for name in FILTER_FIELDS:
        value = (flt or {}).get(name)
        if not value:
            continue
        if isinstance(value, list):
            joiner = " and " if name == "tags" else " or "
            value = joiner.join(str(v).replace("_", " ") if name == "status" else str(v)
                                for v in value)  # fmt: skip
        parts.append(f"{LABELS[name]} {value}")
    return " · ".join(parts) or "no filter"


def refs_of(text: str) -> list[str]:
    """Device ids or serial numbers, one per line or separated by commas, ; or spaces."""
    return list(dict.fromkeys(r for r in re.split(r"[\s,;]+", text) if r))
