"""Rules of firmware artifacts: upload (checked, signed if the policy says so), list,
read, delete (never while a rollout or an update still needs it)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from types import SimpleNamespace

from pydantic import ValidationError

from fieldwatch.auth.principal import Principal
from fieldwatch.core.errors import ValidationFailed, found_in_workspace, validation_errors
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.artifacts.blobs import BlobStore
from fieldwatch.firmware.artifacts.errors import (
    ArtifactInUse,
    ArtifactNotFound,
    InvalidField,
    VersionExists,
)
from fieldwatch.firmware.artifacts.keys import SigningService
from fieldwatch.firmware.artifacts.repository import ArtifactRepository
from fieldwatch.firmware.artifacts.schemas import ArtifactRead, ArtifactUpload
from fieldwatch.firmware.artifacts.signing import manifest
from fieldwatch.firmware.artifacts.upload import UploadForm
from fieldwatch.firmware.models import FirmwareArtifact

log = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"


def upload_fields(form: UploadForm) -> ArtifactUpload:
    """The form's fields as an ``ArtifactUpload`` (422 with the field errors)."""
    data: dict[str, object] = {}
    for name, values in form.fields.items():
        many = name in {"device_types", "hardware_versions"}
        data[name] = values if many else values[-1]
    try:
        return ArtifactUpload.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        )
        fields = ", ".join(e["field"] for e in errors)
        raise ValidationFailed(f"Invalid value for: {fields}", errors=errors) from exc


def _safe_filename(name: str | None, version: str) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return (base or f"firmware-{version}.bin")[:200]


class ArtifactService:
    def __init__(self, uow: UnitOfWork, store: BlobStore) -> None:
        self.uow = uow
        self.store = store
        self.artifacts = ArtifactRepository(uow.session)
        self.signing = SigningService(uow)

    async def upload(self, principal: Principal, form: UploadForm) -> FirmwareArtifact:
        """Store an upload whose file is written but not yet in place: checked, then
        its blob put in place and its row added (committed by the caller)."""
        assert form.blob is not None
        try:
            fields = upload_fields(form)
            if await self.artifacts.version_taken(principal.workspace_id, fields.version):
                raise VersionExists(
                    f"Version {fields.version} is already uploaded in this workspace.",
                    version=fields.version,
                )
            blob = await form.blob.seal()
            if blob.size == 0:
                raise InvalidField("file", "The firmware file is empty.")
            draft = SimpleNamespace(**fields.model_dump(), sha256=blob.sha256, size=blob.size)
            key = await self.signing.check_upload(
                principal, manifest(draft), fields.signature, fields.signing_key
            )
        except BaseException:
            await form.blob.abort()
            raise
        await form.blob.finish()
        artifact = FirmwareArtifact(
            workspace_id=principal.workspace_id,
            version=fields.version,
            device_types=fields.device_types,
            hardware_versions=fields.hardware_versions,
            min_from_version=fields.min_from_version,
            security_version=fields.security_version,
            sha256=blob.sha256,
            size=blob.size,
            filename=_safe_filename(form.filename, fields.version),
            content_type=(form.content_type or DEFAULT_CONTENT_TYPE)[:100],
            signature=fields.signature if key is not None else None,
            signing_key_id=key.id if key is not None else None,
            notes=fields.notes,
            created_by=principal.actor,
        )
        self.artifacts.add(artifact)
        await self.uow.session.flush()
        return artifact

    async def get(self, principal: Principal, artifact_id: uuid.UUID) -> FirmwareArtifact:
        found = await self.artifacts.get(principal.workspace_id, artifact_id)
        return found_in_workspace(found, "firmware artifact", artifact_id, ArtifactNotFound)

    async def page(
        self, principal: Principal, *, device_type: str | None, limit: int, offset: int
    ) -> tuple[Sequence[FirmwareArtifact], int]:
        return await self.artifacts.page(
            principal.workspace_id, device_type=device_type, limit=limit, offset=offset
        )

    async def read(self, artifacts: Sequence[FirmwareArtifact]) -> list[ArtifactRead]:
        """The API's view of ``artifacts``, with their manifests and keys' fingerprints."""
        fingerprints = await self.signing.fingerprints([a.signing_key_id for a in artifacts])
        out = []
        for artifact in artifacts:
            read = ArtifactRead.model_validate(artifact)
            if artifact.signing_key_id is not None:
                read.signing_key = fingerprints.get(artifact.signing_key_id)
            out.append(read)
        return out

    async def delete(self, principal: Principal, artifact_id: uuid.UUID) -> None:
        """Delete an artifact nothing needs any more; its blob goes too once no artifact
        (of any workspace: blobs are shared by content) refers to it."""
        artifact = await self.get(principal, artifact_id)
        if await self.artifacts.unfinished_rollouts(artifact.id):
            raise ArtifactInUse("A rollout that has not finished uses this artifact.")
        if await self.artifacts.open_updates(artifact.id):
            raise ArtifactInUse("A device update that has not finished uses this artifact.")
        if await self.artifacts.history(artifact.id):
            raise ArtifactInUse(
                "Finished rollouts or device updates refer to this artifact; it is kept "
                "for their history."
            )
        sha256 = artifact.sha256
        await self.artifacts.delete(artifact)
        self.uow.after_commit(lambda: self._drop_blob(sha256))

    async def _drop_blob(self, sha256: str) -> None:
        async with self.uow.session.begin():
            referenced = await self.artifacts.blob_referenced(sha256)
        if not referenced:
            await self.store.delete(sha256)
            log.info("deleted an unreferenced firmware blob", extra={"sha256": sha256})
