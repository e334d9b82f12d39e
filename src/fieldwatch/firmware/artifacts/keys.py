"""Rules of a workspace's signing keys and signing policy, and the check of an
upload's signature."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import found_in_workspace
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.artifacts import signing
from fieldwatch.firmware.artifacts.errors import (
    InvalidField,
    SignatureInvalid,
    SignatureRequired,
    SigningKeyExists,
    SigningKeyNotFound,
)
from fieldwatch.firmware.artifacts.repository import SigningKeyRepository
from fieldwatch.firmware.artifacts.schemas import PolicyRead, PolicyUpdate, SigningKeyCreate
from fieldwatch.firmware.models import FirmwarePolicy, SigningKey


class SigningService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.keys = SigningKeyRepository(uow.session)

    # --- keys ---------------------------------------------------------------------

    async def add_key(self, principal: Principal, body: SigningKeyCreate) -> SigningKey:
        try:
            raw = signing.parse_public_key(body.public_key)
        except ValueError as exc:
            raise InvalidField("public_key", str(exc)) from exc
        fingerprint = signing.fingerprint(raw)
        if await self.keys.by_fingerprint(principal.workspace_id, fingerprint) is not None:
            raise SigningKeyExists(f"The key {fingerprint} is already registered here.")
        key = SigningKey(
            workspace_id=principal.workspace_id,
            name=body.name,
            public_key=base64.b64encode(raw).decode(),
            fingerprint=fingerprint,
            created_by=principal.actor,
        )
        self.keys.add(key)
        await self.uow.session.flush()
        return key

    async def page_keys(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[Sequence[SigningKey], int]:
        return await self.keys.page(principal.workspace_id, limit=limit, offset=offset)

    async def get_key(self, principal: Principal, key_id: uuid.UUID) -> SigningKey:
        found = await self.keys.get(principal.workspace_id, key_id)
        return found_in_workspace(found, "signing key", key_id, SigningKeyNotFound)

    async def revoke_key(self, principal: Principal, key_id: uuid.UUID) -> SigningKey:
        """Mark the key revoked: no new upload verifies with it; artifacts signed
        before keep their signature."""
        key = await self.get_key(principal, key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            await self.uow.session.flush()
        return key

    async def fingerprints(self, key_ids: Sequence[uuid.UUID | None]) -> dict[uuid.UUID, str]:
        found = await self.keys.by_ids(k for k in key_ids if k is not None)
        return {key_id: key.fingerprint for key_id, key in found.items()}

    # --- policy -------------------------------------------------------------------

    async def policy(self, principal: Principal) -> PolicyRead:
        row = await self.keys.policy(principal.workspace_id)
        if row is None:
            return PolicyRead(require_signed=False, updated_by=None, updated_at=None)
        return PolicyRead(
            require_signed=row.require_signed, updated_by=row.updated_by, updated_at=row.updated_at
        )

    async def set_policy(self, principal: Principal, body: PolicyUpdate) -> PolicyRead:
        row = await self.keys.policy(principal.workspace_id)
        if row is None:
            row = FirmwarePolicy(workspace_id=principal.workspace_id)
            self.keys.add(row)
        row.require_signed = body.require_signed
        row.updated_by = principal.actor
        row.updated_at = utcnow()
        await self.uow.session.flush()
        return await self.policy(principal)

    # --- an upload's signature ----------------------------------------------------

    async def check_upload(
        self,
        principal: Principal,
        manifest: Mapping[str, Any],
        signature: str | None,
        key_ref: str | None,
    ) -> SigningKey | None:
        """The key an upload's ``signature`` verifies with (None: unsigned, allowed by
        the policy); 422 otherwise."""
        if signature is None:
            if key_ref is not None:
                raise InvalidField("signature", "A signing_key was named but no signature given.")
            if (await self.policy(principal)).require_signed:
                raise SignatureRequired(
                    "This workspace accepts signed firmware only: send a signature "
                    "(base64 Ed25519 over the canonical manifest) made with one of its keys."
                )
            return None
        raw_signature = signing.decode_base64(signature)
        if raw_signature is None or len(raw_signature) != signing.SIGNATURE_BYTES:
            raise InvalidField("signature", "Expected the base64 of a 64-byte Ed25519 signature.")
        message = signing.canonical_manifest(manifest)
        for key in await self._candidates(principal, key_ref):
            if signing.verifies(base64.b64decode(key.public_key), raw_signature, message):
                return key
        named = f"the key {key_ref}" if key_ref else "no active signing key of this workspace"
        raise SignatureInvalid(f"The signature does not verify with {named}.")

    async def _candidates(self, principal: Principal, key_ref: str | None) -> Sequence[SigningKey]:
        workspace_id = principal.workspace_id
        if key_ref is None:
            return await self.keys.active(workspace_id)
        key: SigningKey | None = None
        with contextlib.suppress(ValueError):
            key = await self.keys.get(workspace_id, uuid.UUID(key_ref))
        if key is None:
            key = await self.keys.by_fingerprint(workspace_id, key_ref.lower())
        if key is None:
            raise SignatureInvalid(f"No signing key {key_ref} in this workspace.", "signing_key")
        if key.revoked_at is not None:
            raise SignatureInvalid(f"The signing key {key_ref} is revoked.", "signing_key")
        return [key]
