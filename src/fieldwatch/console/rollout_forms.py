"""The new-rollout form of the console: a submitted form read into the API's
``RolloutCreate`` (the body of a dry run and of a create), and a refusal's messages put
next to the form's fields.

The target is one of a device group, an ad-hoc filter (the fields of a dynamic group's
form) or devices by id or serial number. The failure threshold is a percentage in the
form (a share in the API); the window's times are UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from fieldwatch.console.group_forms import FILTER_FIELDS, FormProblem, filter_of, refs_of
from fieldwatch.core.errors import validation_errors
from fieldwatch.firmware.rollouts.schemas import RolloutCreate

TARGET_KINDS = ("group", "filter", "devices")
TEXT_FIELDS = (
    "name", "artifact_id", "target_kind", "group_id", "devices", "canary", "percentages",
    "soak_s", "failure_pct", "min_finished", "on_failure", "rate_per_minute", "jitter_s",
    "max_tries", "window_start", "window_end",
)  # fmt: skip
#: The form's fields in the order of the page (the first wrong one gets the focus).
ORDER = ("name", "artifact_id", "target_kind", "group_id", "filter", *FILTER_FIELDS, "devices",
         "canary", "percentages", "soak_s", "failure_pct", "min_finished", "on_failure",
         "rate_per_minute", "jitter_s", "max_tries", "window_start", "window_end")  # fmt: skip
DEFAULTS = {
    "target_kind": "group", "canary": "1", "percentages": "100", "soak_s": "0",
    "failure_pct": "10", "min_finished": "1", "on_failure": "pause", "rate_per_minute": "60",
    "jitter_s": "0", "status": [],
}  # fmt: skip
MAX_REFS = 1000
CHECK = "Check the highlighted fields."
#: The API's field → the form's field.
RENAMED = {"target": "target_kind", "target.group_id": "group_id", "target.device_ids": "devices",
           "target.filter": "filter", "failure_threshold": "failure_pct"}  # fmt: skip


def form_values(form: Any) -> dict[str, Any]:
    """The form as typed (shown again with the preview or a refusal)."""
    values: dict[str, Any] = {}
    for name in (*TEXT_FIELDS, *(f for f in FILTER_FIELDS if f != "status")):
        raw = form.get(name)
        values[name] = raw.strip() if isinstance(raw, str) else ""
    values["status"] = [s for s in form.getlist("status") if isinstance(s, str) and s]
    if values["target_kind"] not in TARGET_KINDS:
        values["target_kind"] = "group"
    return values


def form_field(api_field: str) -> str:
    """The form's field of an API error's field (``target.filter.status.0`` → ``status``)."""
    if api_field.startswith("target.filter."):
        return api_field.split(".")[2]
    if api_field.startswith("target.device_ids"):
        return "devices"
    head = api_field.split(".")[0] if not api_field.startswith("target") else api_field
    return RENAMED.get(head, head)


def problem(message: str, errors: Sequence[Mapping[str, Any]]) -> FormProblem:
    """A refusal with its messages by form field."""
    renamed = [{**e, "field": form_field(str(e.get("field") or ""))} for e in errors]
    found = FormProblem(message, [])
    for e in renamed:
        found.fields.setdefault(str(e["field"]), str(e.get("message")))
    return found


def _wrong(field: str, message: str) -> FormProblem:
    return problem(CHECK, [{"field": field, "message": message}])


def _percentages(text: str) -> list[Any]:
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise _wrong("percentages", "give at least one percentage, the last 100")
    return parts


def _share(text: str) -> Any:
    try:
        pct = float(text)
    except ValueError:
        raise _wrong("failure_pct", "a percentage, e.g. 10") from None
    if not 0 <= pct <= 100:
        raise _wrong("failure_pct", "between 0 and 100")
    return pct / 100


def _utc(name: str, text: str) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _wrong(name, "a date and time, e.g. 2026-12-04T01:00") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def target_of(values: Mapping[str, Any], device_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    kind = values["target_kind"]
    if kind == "group":
        if not values["group_id"]:
            raise _wrong("group_id", "choose a group")
        return {"group_id": values["group_id"]}
    if kind == "filter":
        return {"filter": filter_of(values)}
    return {"device_ids": [str(d) for d in device_ids]}


def body_of(values: Mapping[str, Any], device_ids: Sequence[uuid.UUID]) -> RolloutCreate:
    """The API's body (``device_ids``: the listed devices, found by the caller)."""
    if not values["artifact_id"]:
        raise _wrong("artifact_id", "choose the firmware to roll out")
    body: dict[str, Any] = {
        "name": values["name"], "artifact_id": values["artifact_id"],
        "target": target_of(values, device_ids), "percentages": _percentages(values["percentages"]),
        "failure_threshold": _share(values["failure_pct"] or "10"),
        "on_failure": values["on_failure"] or "pause",
    }  # fmt: skip
    for name in ("canary", "soak_s", "min_finished", "rate_per_minute", "jitter_s", "max_tries"):
        if values[name]:
            body[name] = values[name]
    for name in ("window_start", "window_end"):
        body[name] = _utc(name, values[name])
    try:
        return RolloutCreate.model_validate(body)
    except ValidationError as exc:
        raise problem(CHECK, validation_errors(list(exc.errors()))) from None


def refs(values: Mapping[str, Any]) -> list[str]:
    """The listed devices' ids or serial numbers (when the target is a list)."""
    if values["target_kind"] != "devices":
        return []
    found = refs_of(values["devices"])
    if not found:
        raise _wrong("devices", "give at least one device id or serial number")
    if len(found) > MAX_REFS:
        raise _wrong("devices", f"at most {MAX_REFS} devices")
    return found


def unknown_refs(unknown: Sequence[str]) -> FormProblem:
    more = len(unknown) - 10
    shown = ", ".join(unknown[:10]) + (f" and {more} more" if more > 0 else "")
    return _wrong("devices", f"no such device: {shown}")
