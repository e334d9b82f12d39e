"""API shapes of firmware artifacts, signing keys and the signing policy."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
)

from fieldwatch.firmware.artifacts.signing import manifest

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$"

Version = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=VERSION_PATTERN)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def _list_of_names(value: Any) -> Any:
    """Form fields come repeated, comma-separated, or both: one flat list."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return value
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            out.extend(part.strip() for part in item.split(",") if part.strip())
        else:
            out.append(item)
    return list(dict.fromkeys(out))


class ArtifactUpload(BaseModel):
    """The fields of an upload (multipart form) besides the file."""

    model_config = ConfigDict(extra="forbid")

    version: Version
    device_types: list[Name] = Field(min_length=1, max_length=50)
    hardware_versions: list[Name] = Field(default_factory=list, max_length=100)
    min_from_version: Version | None = None
    security_version: int = Field(default=0, ge=0, le=2**31 - 1)
    notes: str | None = Field(default=None, max_length=10_000)
    signature: str | None = Field(default=None, min_length=1, max_length=200)
    signing_key: str | None = Field(default=None, min_length=1, max_length=100)

    _lists = field_validator("device_types", "hardware_versions", mode="before")(_list_of_names)

    @field_validator("min_from_version", "notes", "signature", "signing_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


class ArtifactRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    version: str
    device_types: list[str]
    hardware_versions: list[str]
    min_from_version: str | None
    security_version: int
    sha256: str
    size: int
    filename: str
    content_type: str
    signature: str | None
    signing_key_id: uuid.UUID | None
    #: Fingerprint of the key the signature verified with (what devices are told).
    signing_key: str | None = None
    notes: str | None
    created_by: str
    created_at: datetime

    @computed_field(description="What the signature covers (canonical JSON of these keys)")
    def manifest(self) -> dict[str, Any]:
        return manifest(self)


class SigningKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    public_key: str = Field(
        min_length=1,
        max_length=1000,
        description="Ed25519 public key: base64 of the raw 32 bytes, or PEM",
    )


class SigningKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    public_key: str
    fingerprint: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    require_signed: bool


class PolicyRead(BaseModel):
    require_signed: bool
    updated_by: str | None
    updated_at: datetime | None
