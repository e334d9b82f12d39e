from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from fieldwatch.auth.passwords import MIN_PASSWORD_LENGTH
from fieldwatch.auth.roles import Role
from fieldwatch.core.schemas import StrictModel


def normalize_email(value: str) -> str:
    value = value.strip().lower()
    local, sep, domain = value.partition("@")
    if not sep or not local or "." not in domain or " " in value or len(value) > 320:
        raise ValueError("not a valid email address")
    return value


Email = Annotated[str, Field(max_length=320), AfterValidator(normalize_email)]


class LoginRequest(StrictModel):
    email: Email
    password: str = Field(min_length=1, max_length=1024)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class RefreshRequest(StrictModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutRequest(StrictModel):
    refresh_token: str | None = Field(default=None, max_length=200)


class WorkspaceRef(BaseModel):
    id: uuid.UUID
    name: str
    role: Role


class MeRead(BaseModel):
    kind: Literal["user", "api_key"]
    id: uuid.UUID
    email: str | None = None
    full_name: str | None = None
    name: str | None = None
    workspace: WorkspaceRef | None = Field(
        description="The workspace of this call; null for a user who belongs to none"
    )
    workspaces: list[WorkspaceRef]


class PasswordChange(StrictModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class WorkspaceCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)


class WorkspaceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    created_at: datetime


class MemberCreate(StrictModel):
    email: Email
    role: Role
    full_name: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class MemberUpdate(StrictModel):
    role: Role


class MemberRead(BaseModel):
    user_id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    joined_at: datetime


class MemberCreated(MemberRead):
    generated_password: str | None = Field(
        default=None, description="Only when a new user was created without a password; shown once."
    )


class ApiKeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    role: Role = Role.viewer
    expires_at: AwareDatetime | None = Field(
        default=None, description="With a timezone, e.g. 2027-01-01T00:00:00Z"
    )


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    role: Role
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret. Shown only in this response; store it now.")
