"""Evaluating alert rules: pure logic, no I/O."""

from __future__ import annotations

import operator as op
import uuid
from collections.abc import Callable
from dataclasses import dataclass

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": op.gt,
    ">=": op.ge,
    "<": op.lt,
    "<=": op.le,
    "==": op.eq,
    "!=": op.ne,
}
SEVERITIES = ("critical", "major", "minor", "warning")
SCOPES = ("all", "device", "device_type")


@dataclass(frozen=True, slots=True)
class RuleView:
    """The parts of a rule the hot path needs (cached per workspace)."""

    id: uuid.UUID
    name: str
    kind: str
    metric: str | None
    operator: str | None
    threshold: float | None
    duration_s: int
    severity: str
    scope: str
    scope_value: str | None

    def applies_to(self, device_id: uuid.UUID, device_type: str) -> bool:
        if self.scope == "device":
            return self.scope_value == str(device_id)
        if self.scope == "device_type":
            return self.scope_value == device_type
        return True

    def breached(self, value: float) -> bool:
        assert self.operator is not None and self.threshold is not None
        return OPERATORS[self.operator](value, self.threshold)

    def describe(self, value: float | None) -> str:
        if self.kind == "offline":
            return "device is offline"
        shown = "?" if value is None else f"{value:g}"
        return f"{self.metric} = {shown} {self.operator} {self.threshold:g}"
