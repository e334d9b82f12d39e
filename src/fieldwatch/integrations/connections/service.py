"""Connections: authorising one with the vendor (OAuth code + PKCE), listing them.

The state and the PKCE verifier of an authorization in flight are kept server-side (the
state as a digest, the verifier sealed) for ``oauth_state_ttl_s``; the callback takes
them once. Tokens are sealed with the key ring before they reach the database and are
never returned by the API.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fieldwatch.auth.models import User
from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import (
    AppError,
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
)
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connections.repository import ConnectionRepository
from fieldwatch.integrations.connections.schemas import AuthStarted, IntegrationRead, QuotaRead
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, ConnectorInfo
from fieldwatch.integrations.connectors.registry import oauth_connector
from fieldwatch.integrations.crypto import KeyRing
from fieldwatch.integrations.metrics import METRICS
from fieldwatch.integrations.models import Connection, OAuthState
from fieldwatch.integrations.oauth import OAuthFlow, VendorRefused, VendorUnreachable, redirect_uri
from fieldwatch.integrations.schemas import HealthMetricRead
from fieldwatch.integrations.sync.repository import SyncRepository

log = logging.getLogger(__name__)


#: An OAuth error code as vendors send them (RFC 6749: printable ASCII; plain ones kept).
OAUTH_CODE = re.compile(r"[A-Za-z0-9_.-]{1,60}")


class CallbackFailed(Exception):
    """A callback that ended without a connection: the problem (what an API caller is
    answered), a short reason (``access_denied``, ``denied``, ``expired``, ``refused``,
    ``unreachable``, ``unavailable``) and the page the flow was started from, if any."""

    def __init__(self, problem: AppError, reason: str, return_to: str | None) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.reason = reason
        self.return_to = return_to


class _Ended(Exception):
    def __init__(self, reason: str, problem: AppError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.problem = problem


def state_digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def credentials_context(connection: Connection) -> str:
    return f"{connection.workspace_id}:{connection.id}:credentials"


def verifier_context(digest: str) -> str:
    return f"oauth-state:{digest}"


def token_expiry(token: dict[str, Any]) -> datetime | None:
    if token.get("expires_at"):
        return datetime.fromtimestamp(float(token["expires_at"]), UTC)
    return None


class ConnectionService:
    def __init__(self, uow: UnitOfWork, settings: Settings, ring: KeyRing) -> None:
        self.uow = uow
        self.settings = settings
        self.ring = ring
        self.repo = ConnectionRepository(uow.session)

    # --- the catalogue ----------------------------------------------------------------

    def _unavailable(self, info: ConnectorInfo, today: datetime) -> str | None:
        lifecycle = info.lifecycle(today.date())
        if info.auth == "upload":
            return "no cloud API: a companion app uploads the data (device data upload)"
        if lifecycle != "active":
            successor = f"; use {info.successor}" if info.successor else ""
            return f"{info.title} is {lifecycle}{successor}"
        if oauth_connector(info.type) is None:
            return "not available in this version of Fieldwatch"
        if not self.settings.vendor_app(info.type).configured:
            name = info.type.upper()
            return (f"not configured: set FIELDWATCH_{name}__CLIENT_ID and "
                    f"FIELDWATCH_{name}__CLIENT_SECRET")  # fmt: skip
        return None

    async def catalogue(self, principal: Principal) -> list[IntegrationRead]:
        now = utcnow()
        counts = await self.repo.counts(principal.workspace_id)
        out = []
        for info in CONNECTORS.values():
            why = self._unavailable(info, now)
            out.append(IntegrationRead(
                type=info.type, title=info.title, vendor=info.vendor, auth=info.auth,
                mode=info.mode, data_types=list(info.data_types),
                metrics=[HealthMetricRead.of(METRICS[t]) for t in info.data_types],
                history_days=info.history_days,
                quotas=[QuotaRead(requests=q.requests, per_s=q.per_s, scope=q.scope)
                        for q in info.quotas],
                lifecycle=info.lifecycle(now.date()), sunset=info.sunset,
                sunset_text=info.sunset_text, support_ended=info.support_ended,
                successor=info.successor, notes=info.notes,
                configured=self.settings.vendor_app(info.type).configured,
                connectable=why is None, unavailable_reason=why,
                connections={s: n for (c, s), n in counts.items() if c == info.type},
            ))  # fmt: skip
        return out

    async def page(
        self, principal: Principal, connector: str | None, *, limit: int, offset: int
    ) -> tuple[Sequence[Connection], int]:
        return await self.repo.page(principal.workspace_id, connector, limit=limit, offset=offset)

    def _flow(self, kind: str) -> OAuthFlow:
        info = CONNECTORS.get(kind)
        connector = oauth_connector(kind)
        if info is None:
            raise NotFound(f"No integration {kind!r}; see GET /api/v1/integrations.")
        why = self._unavailable(info, utcnow())
        if why is not None or connector is None:
            refusal = Conflict(f"{info.title} cannot be connected: {why}.", integration=kind)
            if info.successor:
                refusal.extra["successor"] = info.successor
            raise refusal
        return OAuthFlow(self.settings, connector, self.settings.vendor_app(kind))

    # --- authorising ------------------------------------------------------------------

    async def begin(
        self,
        principal: Principal,
        kind: str,
        *,
        return_to: str | None,
        connection_id: uuid.UUID | None,
    ) -> AuthStarted:
        flow = self._flow(kind)
        if connection_id is not None:
            existing = await self.repo.get(principal.workspace_id, connection_id)
            if existing is None or existing.connector != kind:
                raise NotFound(f"No {kind} connection {connection_id} in this workspace.")
        request = flow.authorization_url()
        digest = state_digest(request.state)
        expires = utcnow() + timedelta(seconds=self.settings.oauth_state_ttl_s)
        self.repo.add(OAuthState(
            state_digest=digest, workspace_id=principal.workspace_id, connector=kind,
            user_id=principal.user_id, actor=principal.actor, connection_id=connection_id,
            code_verifier=self.ring.seal(request.code_verifier.encode(), verifier_context(digest)),
            redirect_uri=redirect_uri(self.settings, kind), return_to=return_to,
            expires_at=expires,
        ))  # fmt: skip
        await self.uow.session.flush()
        return AuthStarted(authorization_url=request.url, expires_at=expires,
                           redirect_uri=redirect_uri(self.settings, kind))  # fmt: skip

    async def complete(
        self, kind: str, *, state: str, code: str | None, error: str | None
    ) -> tuple[Connection, str | None]:
        """The callback: the connection (new or re-authorised) and where to send the
        browser next. A request that ends without a connection raises ``CallbackFailed``
        (its problem and, where the flow named one, the page to go back to)."""
        digest = state_digest(state)
        pending = await self.repo.take_state(digest, kind)
        if pending is None:
            raise BadRequest("Unknown or expired authorization request: start again.")
        try:
            connection = await self._complete(pending, digest, code, error)
        except _Ended as ended:
            raise CallbackFailed(ended.problem, ended.reason, pending.return_to) from None
        return connection, pending.return_to

    async def _complete(
        self, pending: OAuthState, digest: str, code: str | None, error: str | None
    ) -> Connection:
        kind = pending.connector
        if pending.expires_at <= utcnow():
            raise _Ended("expired", BadRequest("Unknown or expired authorization request: "
                                               "start again."))  # fmt: skip
        if error or not code:
            problem = BadRequest(f"The vendor did not grant access: {error or 'no code given'}.",
                                 vendor_error=error)  # fmt: skip
            raise _Ended("access_denied" if error == "access_denied" else "denied", problem)
        try:
            flow = self._flow(kind)
        except AppError as exc:
            raise _Ended("unavailable", exc) from None
        verifier = self.ring.open(pending.code_verifier, verifier_context(digest)).decode()
        try:
            token = await flow.exchange(code, verifier)
            account = await flow.account_id(token)
        except VendorRefused as exc:
            raise _Ended("refused", BadRequest(
                f"{flow.connector.info.title} refused the authorization: {exc.error}.",
                vendor_error=exc.error)) from None  # fmt: skip
        except VendorUnreachable as exc:
            raise _Ended("unreachable", ServiceUnavailable(
                f"{flow.connector.info.title} could not be reached ({exc}); try again.",
                headers={"Retry-After": "30"})) from None  # fmt: skip
        return await self._upsert(pending, flow, account, token)

    async def _actor(self, pending: OAuthState) -> str:
        """Who started the authorization, named as audit rows name a caller."""
        if pending.actor:
            return pending.actor
        if pending.user_id is None:  # started before the actor was kept
            return "api"
        user = await self.uow.session.get(User, pending.user_id)
        return f"user:{user.email}" if user is not None else f"user:{pending.user_id}"

    async def _upsert(
        self, pending: OAuthState, flow: OAuthFlow, account: str, token: dict[str, Any]
    ) -> Connection:
        connection = await self.repo.by_account(pending.workspace_id, pending.connector, account)
        if connection is None:
            connection = Connection(
                id=uuid.uuid4(), workspace_id=pending.workspace_id, connector=pending.connector,
                label=f"{flow.connector.info.vendor} {account}", external_user_id=account,
                created_by=await self._actor(pending),
                consent=list(flow.connector.info.data_types),
            )  # fmt: skip
            self.repo.add(connection)
        granted = str(token.get("scope") or " ".join(flow.connector.scopes))
        scopes = granted.replace(",", " ").split()  # Withings separates them with commas
        connection.scopes = scopes
        connection.status, connection.status_reason = "active", None
        connection.token_expires_at = token_expiry(token)
        connection.credentials = self.ring.seal(
            json.dumps(token).encode(), credentials_context(connection)
        )
        connection.token_version = (connection.token_version or 0) + 1
        await self.uow.session.flush()
        await SyncRepository(self.uow.session).devices_authorised_again(connection.id, utcnow())
        log.info("connection authorised", extra={"connection": str(connection.id),
                                                 "connector": connection.connector})  # fmt: skip
        return connection
