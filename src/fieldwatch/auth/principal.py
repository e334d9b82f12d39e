"""Who is calling: a user (JWT) or an API key, always within one workspace."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.auth.roles import Role
from fieldwatch.core.errors import Forbidden

PrincipalKind = Literal["user", "api_key", "provisioning_key", "device"]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
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


@dataclass(frozen=True, slots=True)
class Account:
    """A signed-in user who belongs to no workspace: enough to answer ``/auth/me``, to
    change the password, sign out or create a workspace; nothing else."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    label: str
    kind: Literal["user"] = "user"


#: Who may call the account routes: a principal in a workspace, or an ``Account``.
Caller = Principal | Account


async def acting_for(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    kind: PrincipalKind,
    label: str,
    role: Role = Role.operator,
) -> Principal:
    """A principal for work done on a workspace's behalf without a user or API key (a
    provisioning key, a device, an MQTT control client): audit rows name ``label``."""
    from fieldwatch.auth.repository import WorkspaceRepository

    workspace = await WorkspaceRepository(session).get(workspace_id)
    if workspace is None:
        raise ValueError(f"no workspace {workspace_id}")
    return Principal(kind=kind, workspace_id=workspace_id, workspace_name=workspace.name,
                     role=role, label=label)  # fmt: skip
