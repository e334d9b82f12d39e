"""What a vendor's notification does. Notifications are hints, never data: a hint
queues a ``webhook`` sync run of the connection's devices (the run asks the vendor for
the data, as any sync does); the scheduled syncs catch whatever a lost hint missed.

- Coalesced: a device with a run queued or waiting gets no second one; the hint's data
  types and window are merged into it. A running run takes no hint (its overlap and
  the next sync catch data the vendor added meanwhile).
- Oura's are signed (``oura.verify``): a refused signature is a 401 and nothing is
  queued. A ``delete`` removes the readings stored from that vendor record (the runs
  keep each record's id) through the telemetry service (rollups rebuilt), forgets the
  record's id and fetches nothing.
- Google Health's are signed by Google (``google_signature``: a missing or refused
  signature is a 401, keys that cannot be fetched a 503 Google retries); the
  subscriber's secret, where Google sends it, must be right, and alone answers the
  endpoint check. An ``UPSERT`` is a hint for its data type from its intervals' start;
  a ``DELETE`` removes the readings of that data type stored in its intervals, and
  their ids.
- Every deletion is in the access log (``delete``, by ``vendor:<connector>``).
- Withings' are unsigned: the account (``userid``) and the window (``startdate``) only
  choose what to sync; a forged one costs a sync, never data.
- The account is looked up in every workspace it is connected in; each gets its own run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import AppError, BadRequest, ServiceUnavailable
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connectors.registry import data_connector
from fieldwatch.integrations.models import Connection, DeviceSync, HealthAccess
from fieldwatch.integrations.sync.runs import open_run
from fieldwatch.integrations.webhooks import google_health, oura, withings
from fieldwatch.integrations.webhooks.google_signature import (
    KeysUnavailable,
    SignatureKeys,
    Unverified,
    signature_of,
)
from fieldwatch.integrations.webhooks.repository import WebhookRepository
from fieldwatch.telemetry.query.queries import TelemetryQueries

log = logging.getLogger(__name__)

#: A reading's time is exact to the microsecond: [ts, ts + 1 µs) is that reading.
_TICK = timedelta(microseconds=1)


class BadSignature(AppError):
    status, slug, title = 401, "bad-signature", "Not signed by the vendor"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class HintService:
    def __init__(self, uow: UnitOfWork, settings: Settings) -> None:
        self.uow = uow
        self.settings = settings
        self.repo = WebhookRepository(uow.session)

    async def oura_challenge(self, verification_token: str, challenge: str) -> str:
        """Oura checks a new subscription's callback: the token must be one Fieldwatch
        gave when subscribing."""
        if not await self.repo.knows_token("oura", token_digest(verification_token)):
            raise BadSignature("Unknown verification token.")
        return challenge

    async def oura(self, body: bytes, headers: dict[str, str],
                   telemetry: TelemetryQueries) -> int:  # fmt: skip
        """A signed Oura notification; how many devices it concerned."""
        why = oura.verify(self.settings.oura.client_secret or "",
                          headers.get("x-oura-timestamp"), headers.get("x-oura-signature"),
                          body, self.settings.vendor_webhook_max_age_s)  # fmt: skip
        if why is not None:
            log.warning("oura notification refused", extra={"reason": why})
            raise BadSignature(f"The notification is refused: {why}.")
        try:
            note = json.loads(body)
            event, kind = str(note["event_type"]), str(note["data_type"])
            user, object_id = str(note["user_id"]), str(note.get("object_id") or "")
        except (ValueError, KeyError, TypeError):
            raise BadRequest("Not an Oura notification.") from None
        metrics = oura.DATA_TYPES.get(kind, ())
        touched = 0
        for connection in await self.repo.accounts("oura", user):
            if event == "delete":
                touched += await self._delete(connection, metrics, object_id, telemetry)
            elif event in ("create", "update"):
                touched += await self._hint(connection, metrics, None)
        return touched

    async def google_health_delivery(self, body: bytes, headers: dict[str, str],
                                     keys: SignatureKeys,
                                     telemetry: TelemetryQueries) -> bool:  # fmt: skip
        """A Google Health delivery; True for its endpoint check (answered 201)."""
        app = self.settings.google_health
        authorization = headers.get("authorization")
        secret_ok = google_health.authorised(app.webhook_secret, authorization)
        if not app.webhook_secret or (authorization is not None and not secret_ok):
            log.warning("google health notification refused: not authorised")
            raise BadSignature("The notification does not carry the subscriber's secret.")
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if google_health.is_verification(parsed):
            if not secret_ok:
                raise BadSignature("The endpoint check does not carry the subscriber's secret.")
            return True
        if app.webhook_verify_signature:
            await self._google_signed(keys, body, signature_of(headers))
        elif not secret_ok:
            raise BadSignature("The notification does not carry the subscriber's secret.")
        try:
            found = google_health.changes(parsed)
        except ValueError:
            raise BadRequest("Not a Google Health notification.") from None
        await self.google_health(found, telemetry)
        return False

    async def _google_signed(self, keys: SignatureKeys, body: bytes, header: str | None) -> None:
        try:
            await keys.verify(self.settings.google_health.webhook_keyset_url, header, body)
        except Unverified as why:
            log.warning("google health notification refused", extra={"reason": str(why)})
            raise BadSignature(f"The notification is refused: {why}.") from None
        except KeysUnavailable as exc:
            raise ServiceUnavailable(str(exc), headers={"Retry-After": "60"}) from None

    async def withings(self, form: dict[str, str]) -> int:
        """An unsigned Withings notification: a hint for the account and window."""
        try:
            user, appli = form["userid"], int(form["appli"])
            since = datetime.fromtimestamp(int(form["startdate"]), UTC) \
                if form.get("startdate") else None  # fmt: skip
        except (KeyError, ValueError, OverflowError, OSError):
            raise BadRequest("Not a Withings notification.") from None
        metrics = withings.APPLI.get(appli, ())
        touched = 0
        for connection in await self.repo.accounts("withings", user):
            touched += await self._hint(connection, metrics, since)
        return touched

    async def _hint(self, connection: Connection, metrics: Sequence[str],
                    since: datetime | None) -> int:  # fmt: skip
        connector = data_connector(connection.connector)
        fetchable = connector.fetchable if connector is not None else ()
        wanted = sorted(m for m in metrics if m in connection.consent and m in fetchable)
        if not wanted:
            return 0
        syncs = await self.repo.syncs_of(connection.id)
        for sync in syncs:
            await self._queue(connection, sync, wanted, since)
        return len(syncs)

    async def _queue(self, connection: Connection, sync: DeviceSync, wanted: list[str],
                     since: datetime | None) -> None:  # fmt: skip
        run = await self.repo.open_run(sync.device_id)
        if run is None:
            run = await open_run(self.uow, sync, "webhook", f"webhook:{connection.connector}",
                                 data_types=wanted)  # fmt: skip
            run.since = since
        elif run.status in ("queued", "retry_wait"):
            if run.data_types:  # an empty list is every type already
                run.data_types = sorted(set(run.data_types) | set(wanted))
            if since is not None and (run.since is None or since < run.since):
                run.since = since
        await self.uow.session.flush()

    async def google_health(self, changes: Sequence[google_health.Change],
                            telemetry: TelemetryQueries) -> int:  # fmt: skip
        """Google Health's notifications (their secret checked by the caller)."""
        touched = 0
        for change in changes:
            for connection in await self.repo.accounts("google_health", change.user_id):
                if change.operation == "DELETE":
                    touched += await self._delete_windows(connection, change.metric,
                                                          change.windows, telemetry)  # fmt: skip
                elif change.windows:
                    since = min(start for start, _ in change.windows)
                    touched += await self._hint(connection, [change.metric], since)
        return touched

    async def _delete_windows(self, connection: Connection, metric: str,
                              windows: Sequence[tuple[datetime, datetime]],
                              telemetry: TelemetryQueries) -> int:  # fmt: skip
        """Remove the readings of ``metric`` the connection's devices have in ``windows``."""
        devices = await self.repo.devices_of(connection.id)
        deleted = 0
        for device_id in devices:
            series = await telemetry.series(device_id, metric)
            for start, end in windows:
                deleted += await telemetry.delete(series, start, end)
            self._deleted(connection, device_id, metric, telemetry)
        for start, end in windows:
            await self.repo.forget_between(connection.id, metric, start, end)
        await self.uow.session.flush()
        log.info("vendor data deleted", extra={"connection": str(connection.id),
                                               "metric": metric, "readings": deleted})  # fmt: skip
        return deleted

    def _deleted(self, connection: Connection, device_id: uuid.UUID, metric: str,
                 telemetry: TelemetryQueries) -> None:  # fmt: skip
        """Rebuild the device's latest values once committed; note it in the access log."""
        self.uow.after_commit(partial(telemetry.hub.latest.reload_device,
                                      connection.workspace_id, device_id))  # fmt: skip
        self.repo.log([HealthAccess(
            workspace_id=connection.workspace_id, device_id=device_id,
            actor=f"vendor:{connection.connector}", action="delete",
            what=f"{metric} deleted at the vendor", at=utcnow())])  # fmt: skip

    async def _delete(self, connection: Connection, metrics: Sequence[str], object_id: str,
                      telemetry: TelemetryQueries) -> int:  # fmt: skip
        if not object_id or not metrics:
            return 0
        records = await self.repo.records(connection.id, metrics, object_id)
        for record in records:
            series = await telemetry.series(record.device_id, record.metric)
            await telemetry.delete(series, record.ts, record.ts + _TICK)
            self._deleted(connection, record.device_id, record.metric, telemetry)
        await self.repo.forget_records(records)
        await self.uow.session.flush()
        if records:
            log.info("vendor record deleted", extra={"connection": str(connection.id),
                                                     "records": len(records)})  # fmt: skip
        return len(records)
