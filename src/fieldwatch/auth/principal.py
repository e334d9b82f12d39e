"""Who is calling: a user (JWT) or an API key, always within one workspace."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from fieldwatch.auth.roles import Role
from fieldwatch.core.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "api_key", "provisioning_key", "device"]
    workspace_id: uuid.UUID
    workspace_name: str
    role: Role
    label: str
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None

    def require(self, role: Role) -> None:
        if not self.role.allows(role):
            raise Forbidden(
                f"This needs the {role.value} role in workspace {self.workspace_name!r}; "
                f"you have {self.role.value}.",
                required_role=role.value,
                your_role=self.role.value,
            )

    @property
    def actor(self) -> str:
        """How audit rows name the caller."""
        return f"{self.kind}:{self.label}"
