"""Privacy rules for health data.

- Consent: which data types of a connection are shared; later syncs fetch only those
  (the runner fetches ``connector.fetchable ∩ consent``).
- Consent is capped by what the grant at the vendor still allows (Garmin's users
  withdraw permissions there: ``garmin.service`` narrows the consent; an admin cannot
  widen it past them).
- Disconnecting: the vendor's notifications of the connection are revoked (Withings),
  the grant is ended at the vendor where it can be (RFC 7009 revocation: Oura, Google;
  Garmin's deregistration of the user), the
  connection is marked ``revoked`` and its tokens are dropped, its
  devices' syncs stop (paused, waiting runs cancelled); with ``purge`` the synced
  readings of its devices are deleted through the telemetry service (rollups rebuilt),
  and so are their segments, cursors and vendor ids.
- The access log: reads of a health device's data (``PrivacyRepository.health_devices``:
  fed by a vendor cloud or health exports, or registered as a wearable) are recorded
  (who, what, when): the telemetry and monitoring APIs, the console's device page and
  charts, analytics, fleet statistics; so are deletions and purges. Admins read it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from functools import partial

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import NotFound, ValidationFailed
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connections.repository import ConnectionRepository
from fieldwatch.integrations.connections.service import credentials_context
from fieldwatch.integrations.connectors import garmin
from fieldwatch.integrations.connectors.catalogue import CONNECTORS
from fieldwatch.integrations.connectors.registry import oauth_connector
from fieldwatch.integrations.crypto import KeyRing
from fieldwatch.integrations.models import Connection, HealthAccess
from fieldwatch.integrations.oauth import OAuthFlow, VendorRefused, VendorUnreachable
from fieldwatch.integrations.privacy.repository import PrivacyRepository
from fieldwatch.integrations.privacy.schemas import ConsentRead, ConsentUpdate, DisconnectRead
from fieldwatch.integrations.webhooks.repository import WebhookRepository
from fieldwatch.integrations.webhooks.revoke import revoke_notifications
from fieldwatch.telemetry.query.queries import TelemetryQueries

log = logging.getLogger(__name__)


async def health_devices(
    uow: UnitOfWork, principal: Principal, device_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of ``device_ids`` whose data is health data (nothing is logged)."""
    return await PrivacyRepository(uow.session).health_devices(principal.workspace_id,
                                                               device_ids)  # fmt: skip


async def record_reads(
    uow: UnitOfWork, principal: Principal, device_ids: Iterable[uuid.UUID], what: str
) -> set[uuid.UUID]:
    """Log a read of these devices' data where it is health data (one row per such
    device, one query to tell them apart), and commit it (reads run in a read
    transaction: the log is written before the data is answered). Answers the devices
    logged: the health devices among them."""
    repo = PrivacyRepository(uow.session)
    health = await repo.health_devices(principal.workspace_id, set(device_ids))
    if _log(repo, principal, health, what, "read"):
        await uow.commit()
    return health


async def record_deletion(
    uow: UnitOfWork, principal: Principal, device_id: uuid.UUID, what: str
) -> None:
    """Log a deletion of a health device's readings, in the deleting transaction."""
    repo = PrivacyRepository(uow.session)
    _log(repo, principal, await repo.health_devices(principal.workspace_id, [device_id]),
         what, "delete")  # fmt: skip


async def record_fleet_reads(
    uow: UnitOfWork, principal: Principal, since: datetime, what: str
) -> set[uuid.UUID]:
    """Log a read of figures over the whole workspace's readings since ``since`` (fleet
    statistics) for each health device that had readings in that time."""
    repo = PrivacyRepository(uow.session)
    health = await repo.health_devices(principal.workspace_id, None, fed_since=since)
    if _log(repo, principal, health, what, "read"):
        await uow.commit()
    return health


def _log(
    repo: PrivacyRepository, principal: Principal, devices: set[uuid.UUID], what: str,
    action: str,
) -> bool:  # fmt: skip
    if not devices:
        return False
    now = utcnow()
    repo.log(HealthAccess(workspace_id=principal.workspace_id, device_id=d,
                          actor=principal.actor, action=action, what=what[:200], at=now)
             for d in sorted(devices))  # fmt: skip
    return True


def vendor_permitted(connector: str, scopes: list[str] | None) -> set[str]:
    """The data types the grant at the vendor still allows: Garmin's users withdraw
    permissions at Garmin (``userPermissionsChange``); other vendors' grants are whole."""
    if connector == "garmin":
        return garmin.permitted(garmin.known_permissions(list(scopes or [])))
    info = CONNECTORS.get(connector)
    return set(info.data_types) if info is not None else set()


class PrivacyService:
    def __init__(self, uow: UnitOfWork, settings: Settings, ring: KeyRing) -> None:
        self.uow = uow
        self.settings = settings
        self.ring = ring
        self.repo = PrivacyRepository(uow.session)
        self.connections = ConnectionRepository(uow.session)

    async def _connection(self, principal: Principal, connection_id: uuid.UUID) -> Connection:
        connection = await self.connections.get(principal.workspace_id, connection_id)
        if connection is None:
            raise NotFound(f"No connection {connection_id} in this workspace.")
        return connection

    async def set_consent(
        self, principal: Principal, connection_id: uuid.UUID, body: ConsentUpdate
    ) -> ConsentRead:
        connection = await self._connection(principal, connection_id)
        info = CONNECTORS[connection.connector]
        unknown = [t for t in body.data_types if t not in info.data_types]
        if unknown:
            message = f"{info.title} shares no {', '.join(unknown)}: choose among its data types."
            raise ValidationFailed(message, errors=[{"field": "data_types", "message": message}],
                                   data_types=list(info.data_types))  # fmt: skip
        allowed = vendor_permitted(connection.connector, connection.scopes)
        withdrawn = [t for t in body.data_types if t not in allowed]
        if withdrawn:
            message = (
                f"The account holder withdrew {', '.join(withdrawn)} at {info.vendor}: "
                "they can be shared again once the permission is granted there."
            )
            raise ValidationFailed(message, errors=[{"field": "data_types", "message": message}],
                                   withdrawn=withdrawn)  # fmt: skip
        connection.consent = list(dict.fromkeys(body.data_types))
        await self.uow.session.flush()
        log.info("consent changed", extra={"connection": str(connection.id),
                                           "data_types": connection.consent})  # fmt: skip
        return ConsentRead(connection_id=connection.id, connector=connection.connector,
                           data_types=connection.consent)  # fmt: skip

    async def consent(self, principal: Principal, connection_id: uuid.UUID) -> ConsentRead:
        connection = await self._connection(principal, connection_id)
        return ConsentRead(connection_id=connection.id, connector=connection.connector,
                           data_types=list(connection.consent))  # fmt: skip

    async def _revoke_at_vendor(self, connection: Connection) -> bool:
        connector = oauth_connector(connection.connector)
        if connector is None or not connection.credentials:
            return False
        flow = OAuthFlow(self.settings, connector, self.settings.vendor_app(connection.connector))
        if not flow.can_end_grant:
            return False
        token = json.loads(self.ring.open(connection.credentials, credentials_context(connection)))
        await self.uow.release()  # no pooled connection held while the vendor answers
        try:
            await flow.end_grant(token)
        except (VendorRefused, VendorUnreachable) as exc:
            log.warning("vendor revoke failed", extra={"connection": str(connection.id),
                                                       "error": type(exc).__name__})  # fmt: skip
            return False
        return True

    async def disconnect(
        self, principal: Principal, connection_id: uuid.UUID, *, purge: bool,
        telemetry: TelemetryQueries,
    ) -> DisconnectRead:  # fmt: skip
        connection = await self._connection(principal, connection_id)
        await revoke_notifications(self.uow, self.settings, self.ring, connection)
        connection = await self._connection(principal, connection_id)
        revoked = await self._revoke_at_vendor(connection)
        connection = await self._connection(principal, connection_id)
        await WebhookRepository(self.uow.session).revoke_all(connection.id)
        now = utcnow()
        connection.status, connection.status_reason = (
            "revoked",
            f"disconnected by {principal.actor}",
        )
        connection.credentials, connection.token_expires_at = None, None
        devices = await self.repo.devices_of(connection.id)
        await self.repo.stop_syncs(connection.id, devices, now)
        deleted = 0
        if purge and devices:
            deleted = await self._purge(principal, connection.id, devices, telemetry)
        await self.uow.session.flush()
        extra = {"connection": str(connection.id), "purge": purge, "vendor_revoked": revoked}
        log.info("connection disconnected", extra=extra)
        return DisconnectRead(connection_id=connection.id, status=connection.status,
                              revoked_at_vendor=revoked, devices=devices, purged=purge,
                              readings_deleted=deleted)  # fmt: skip

    async def _purge(
        self, principal: Principal, connection_id: uuid.UUID, devices: list[uuid.UUID],
        telemetry: TelemetryQueries,
    ) -> int:  # fmt: skip
        deleted = 0
        for device_id in devices:
            deleted += await telemetry.delete(await telemetry.series(device_id, None), None, None)
            self.uow.after_commit(partial(telemetry.hub.latest.reload_device,
                                          principal.workspace_id, device_id))  # fmt: skip
        await self.repo.forget_synced(connection_id, devices)
        now = utcnow()
        self.repo.log(HealthAccess(workspace_id=principal.workspace_id, device_id=d,
                                   actor=principal.actor, action="purge",
                                   what="all synced readings", at=now)
                      for d in devices)  # fmt: skip
        return deleted

    async def access_log(
        self, principal: Principal, device_id: uuid.UUID | None, *, limit: int, offset: int,
        actor: str | None = None,
    ) -> tuple[Sequence[HealthAccess], int]:  # fmt: skip
        return await self.repo.access_log(principal.workspace_id, device_id, limit=limit,
                                          offset=offset, actor=actor)  # fmt: skip

    async def device_names(
        self, principal: Principal, device_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        """The names of these devices of the workspace (those of an access log's page)."""
        return await self.repo.device_names(principal.workspace_id, device_ids)
