from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Per-workspace roles. Viewers read; operators change devices; admins also manage
    members, API keys and provisioning."""

    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, required: Role) -> bool:
        return self.rank >= required.rank


_RANK = {Role.viewer: 0, Role.operator: 1, Role.admin: 2}
