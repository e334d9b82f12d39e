"""The device page's control section without HTTP: its two forms read and checked field
by field (a readable message for each field, shown next to it), and what its tables
show (a command as a row, the configuration as desired against reported, key by key)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from fieldwatch.commands.config import config_difference
from fieldwatch.commands.models import OPEN_STATES
from fieldwatch.commands.schemas import MAX_TTL_S, CommandCreate, CommandRead, ConfigRead

#: The longest JSON text a form takes (parameters, a configuration document).
MAX_JSON_CHARS = 65_536
#: Values longer than this are shown folded (the whole value one click away).
SHORT_CHARS = 60

MESSAGES = {
    "command": "Enter a command name of at most 100 characters: letters, digits and "
    "_ . : - (no spaces), for example reboot.",
    "ttl_s": f"Enter a whole number of seconds from 1 to {MAX_TTL_S:,} (30 days).",
    "params": 'Enter a JSON object, for example {"interval": 30}.',
}

CHANGES = {
    "added": "added: not on the device yet",
    "changed": "changed: the device has another value",
    "removed": "removed: still on the device",
    "same": "applied",
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_object(text: str, errors: dict[str, str], name: str) -> dict[str, Any] | None:
    """``text`` as a JSON object, or None with a readable message in ``errors[name]``."""
    if len(text) > MAX_JSON_CHARS:
        errors[name] = f"This is too long: at most {MAX_JSON_CHARS:,} characters."
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        errors[name] = f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        return None
    except ValueError as exc:
        errors[name] = f"Not valid JSON: {exc}."
        return None
    if not isinstance(value, dict):
        errors[name] = 'This must be a JSON object in braces, for example {"interval": 30}.'
        return None
    return value


def _whole_number(text: str) -> int | None:
    """A number of ASCII digits (a few: no huge conversion), else None."""
    if 0 < len(text) <= 12 and text.isascii() and text.isdigit():
        return int(text)
    return None


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)


def pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


@dataclass
class SendForm:
    """The "send a command" form as typed, its errors, and the command it stands for.
    ``key`` is the idempotency key of this rendering of the form: a double submit sends
    one command."""

    command: str = ""
    params: str = "{}"
    ttl_s: str = "3600"
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    errors: dict[str, str] = field(default_factory=dict)
    body: CommandCreate | None = None

    @classmethod
    def read(cls, form: Mapping[str, Any]) -> SendForm:
        sent = cls(
            command=str(form.get("command") or "").strip(),
            params=str(form.get("params") or "").strip() or "{}",
            ttl_s=str(form.get("ttl_s") or "").strip() or "3600",
            key=str(form.get("idempotency_key") or "").strip() or uuid.uuid4().hex,
        )
        params = json_object(sent.params, sent.errors, "params")
        ttl = _whole_number(sent.ttl_s)
        if ttl is None:
            sent.errors["ttl_s"] = MESSAGES["ttl_s"]
        try:  # every field checked, also when another one is wrong already
            body = CommandCreate(
                command=sent.command, params=params or {},
                ttl_s=3600 if ttl is None else ttl,
                idempotency_key=sent.key[:200],
            )  # fmt: skip
        except ValidationError as exc:
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else "command"
                sent.errors.setdefault(name, MESSAGES.get(name, error["msg"]))
        else:
            if not sent.errors:
                sent.body = body
        return sent

    def again(self) -> SendForm:
        """The same values for the next command, under a new idempotency key."""
        return SendForm(command=self.command, params=self.params, ttl_s=self.ttl_s)


@dataclass
class ConfigForm:
    """The desired configuration as typed (JSON), its error, and the document."""

    text: str
    errors: dict[str, str] = field(default_factory=dict)
    document: dict[str, Any] | None = None

    @classmethod
    def of(cls, config: ConfigRead) -> ConfigForm:
        return cls(text=pretty(config.desired))

    @classmethod
    def read(cls, form: Mapping[str, Any]) -> ConfigForm:
        typed = cls(text=str(form.get("desired") or "").strip() or "{}")
        typed.document = json_object(typed.text, typed.errors, "desired")
        return typed


def command_row(command: CommandRead) -> dict[str, Any]:
    """What a row of the commands table shows."""
    outcome = None if command.result is None else compact(command.result)
    return {
        "c": command,
        "params": compact(command.params),
        "outcome": outcome,
        "cancellable": command.status in OPEN_STATES,
        "short": SHORT_CHARS,
    }


def _same_leaves(want: Any, have: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(want, dict) and isinstance(have, dict):
        for key in want:
            if key in have:
                yield from _same_leaves(want[key], have[key], f"{path}.{key}" if path else key)
    elif path and want == have:
        yield path, want


def config_rows(config: ConfigRead) -> list[dict[str, Any]]:
    """Every key of the desired and reported documents, side by side: the difference
    (added, changed, removed) and the keys already applied."""
    rows = [
        {"path": d.path, "change": d.change, "label": CHANGES[d.change],
         "desired": None if d.change == "removed" else compact(d.desired),
         "reported": None if d.change == "added" else compact(d.reported)}
        for d in config_difference(config.desired, config.reported)
    ]  # fmt: skip
    if config.reported is not None:
        rows += [
            {"path": path, "change": "same", "label": CHANGES["same"],
             "desired": compact(value), "reported": compact(value)}
            for path, value in _same_leaves(config.desired, config.reported, "")
        ]  # fmt: skip
    return sorted(rows, key=lambda r: str(r["path"]))
