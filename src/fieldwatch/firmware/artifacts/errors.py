"""The problems the artifacts API answers with."""

from __future__ import annotations

from typing import Any

from fieldwatch.core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)


class ArtifactNotFound(NotFound):
    slug, title = "artifact-not-found", "Firmware artifact not found"


class SigningKeyNotFound(NotFound):
    slug, title = "signing-key-not-found", "Signing key not found"


class VersionExists(Conflict):
    slug, title = "artifact-version-exists", "Firmware version already uploaded"


class SigningKeyExists(Conflict):
    slug, title = "signing-key-exists", "Signing key already registered"


class ArtifactInUse(Conflict):
    slug, title = "artifact-in-use", "Firmware artifact in use"


def field_problem(field: str, message: str, kind: str) -> dict[str, Any]:
    """One entry of a problem's ``errors`` list, as the API's validation errors have."""
    return {"field": field, "message": message, "type": kind}


class SignatureInvalid(ValidationFailed):
    """The signature does not verify with the key named (or any active key)."""

    slug, title = "signature-invalid", "Signature invalid"

    def __init__(self, detail: str, field: str = "signature") -> None:
        super().__init__(detail, errors=[field_problem(field, detail, "signature_invalid")])


class SignatureRequired(ValidationFailed):
    slug, title = "signature-required", "Signature required"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=[field_problem("signature", detail, "signature_required")])


class InvalidField(ValidationFailed):
    """One field of the request is unusable (a malformed key, signature or form)."""

    def __init__(self, field: str, detail: str, kind: str = "value_error") -> None:
        super().__init__(detail, errors=[field_problem(field, detail, kind)])


class DownloadLinkInvalid(Forbidden):
    slug, title = "download-link-invalid", "Download link invalid or expired"


class DownloadsBusy(ServiceUnavailable):
    slug, title = "downloads-busy", "Too many downloads at once"
