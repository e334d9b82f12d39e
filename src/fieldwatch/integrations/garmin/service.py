"""Garmin's callbacks: pushed summaries stored, pinged ones pulled and stored, users
who deregistered revoked, permissions the user withdrew reflected in the consent.

A callback names Garmin's user (``userId``), not a workspace: its data goes to every
active connection of that user (one per workspace that connected the account), to
each device imported from it, as a ``webhook`` run (``sync.pushed``). A summary seen
before (its id, for dailies with its duration) is a repeat and is skipped; the
readings themselves are idempotent anyway. Users nobody connected are logged and
ignored. A ping's callback address is pulled only when it is on the configured Garmin
API host (scheme, host and port), with the connection's token: anything else is
refused, so a forged ping cannot make Fieldwatch call another host. Neither tokens
nor callback addresses (they carry a token) are logged.

A ``userPermissionsChange`` names the permissions the user's grant has now: they are
kept as the connection's scopes and the consent loses the data types they no longer
allow (every summary read here needs ``HEALTH_EXPORT``), so nothing of them is pulled,
stored or asked for again; granted again at Garmin, an admin shares them again
(``PUT …/consent``).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fieldwatch.core.errors import BadRequest, Forbidden
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connections.tokens import TokenSource
from fieldwatch.integrations.connectors.base import Sample, VendorError, endpoints
from fieldwatch.integrations.connectors.garmin import (
    SUMMARY_METRICS,
    SUMMARY_TYPES,
    GarminConnector,
    permitted,
    same_origin,
)
from fieldwatch.integrations.garmin.repository import GarminRepository
from fieldwatch.integrations.garmin.summaries import Summary, summary
from fieldwatch.integrations.models import Connection, DeviceSync, VendorRecord
from fieldwatch.integrations.sync.pushed import PushedRuns
from fieldwatch.integrations.sync.vendor import VendorSession

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ping:
    kind: str
    user_id: str
    url: str


def _summaries(body: dict[str, Any]) -> dict[str, list[Summary]]:
    """The readable summaries of a push, by Garmin user."""
    out: dict[str, list[Summary]] = defaultdict(list)
    for kind in SUMMARY_TYPES:
        for item in body.get(kind) or []:
            found = summary(kind, item) if isinstance(item, dict) else None
            if found is not None:
                out[found.user_id].append(found)
    return out


def _pages(summaries: list[Summary]) -> list[tuple[str, list[Sample]]]:
    by_metric: dict[str, list[Sample]] = defaultdict(list)
    for item in summaries:
        for metric, sample in item.samples:
            by_metric[metric].append(sample)
    return [(m, sorted(s, key=lambda x: x.ts)) for m, s in sorted(by_metric.items())]


class GarminCallbacks:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        settings: Settings,
        tokens: TokenSource,
        runs: PushedRuns,
        clock: Callable[[], datetime],
    ) -> None:
        self.uow = uow
        self.settings = settings
        self.tokens = tokens
        self.runs = runs
        self.clock = clock
        self.connector = GarminConnector()

    def check_sender(self, client_id: str | None) -> None:
        """Garmin names the app it calls for (``garmin-client-id``): another app's
        callback is refused."""
        ours = self.settings.vendor_app("garmin").client_id
        if client_id is not None and ours and client_id != ours:
            raise Forbidden("This callback is for another Garmin app.")

    async def _targets(self, user_id: str) -> list[tuple[Connection, list[DeviceSync]]]:
        async with self.uow() as uow:
            repo = GarminRepository(uow.session)
            connections = await repo.connections(user_id)
            out = [(c, list(await repo.device_syncs(c.id))) for c in connections
                   if c.status == "active"]  # fmt: skip
        if not connections:
            log.info("garmin: a callback for a user nobody connected, ignored",
                     extra={"garmin_user": user_id})  # fmt: skip
        elif not out:
            log.info("garmin: a callback for a connection that is not active, ignored",
                     extra={"garmin_user": user_id})  # fmt: skip
        return out

    # --- push ---------------------------------------------------------------------------

    async def push(self, body: dict[str, Any]) -> bool:
        """Store a push; False when some of it could not be stored (Garmin sends again)."""
        ok = True
        for user_id, summaries in _summaries(body).items():
            for connection, syncs in await self._targets(user_id):
                ok &= await self._deliver(connection, syncs, summaries, "garmin:push")
        return ok

    async def _new(self, connection: Connection, summaries: list[Summary]) -> list[Summary]:
        """The summaries not stored before that bring a consented metric (one bringing
        none is not noted as seen: shared again later, Garmin's next copy is stored)."""
        summaries = [s for s in summaries
                     if any(m in connection.consent for m, _ in s.samples)]  # fmt: skip
        kinds: dict[str, list[str]] = defaultdict(list)
        for item in summaries:
            kinds[item.kind].append(item.record_id)
        async with self.uow() as uow:
            repo = GarminRepository(uow.session)
            seen = {k: await repo.seen(connection.id, k, ids) for k, ids in kinds.items()}
        return [s for s in summaries if s.record_id not in seen[s.kind]]

    async def _deliver(
        self, connection: Connection, syncs: list[DeviceSync], summaries: list[Summary],
        requested_by: str,
    ) -> bool:  # fmt: skip
        if not syncs:
            log.info("garmin: data for a connection with no imported device, ignored",
                     extra={"connection": str(connection.id)})  # fmt: skip
            return True
        new = await self._new(connection, summaries)
        if not new:
            return True  # a repeat: everything in it was stored before
        ok = True
        for sync in syncs:
            status = await self.runs.run(sync, _pages(new), requested_by, connection.consent)
            ok &= status == "completed"
        if ok:
            await self._remember(connection, syncs[0], new)
        return ok

    async def _remember(self, connection: Connection, sync: DeviceSync,
                        summaries: list[Summary]) -> None:  # fmt: skip
        async with self.uow() as uow:
            repo = GarminRepository(uow.session)
            for item in summaries:
                metric = item.samples[0][0] if item.samples else item.kind
                await repo.remember(VendorRecord(
                    connection_id=connection.id, data_type=item.kind, vendor_id=item.record_id,
                    device_id=sync.device_id, metric=metric, ts=item.start,
                ))  # fmt: skip
            await uow.commit()

    # --- ping and pull ------------------------------------------------------------------

    def pings(self, body: dict[str, Any]) -> list[Ping]:
        """The callback addresses of a ping, each checked to be on the configured API
        host (else the whole ping is refused)."""
        api = endpoints(self.connector, self.settings.vendor_app("garmin")).api
        out = []
        for kind in SUMMARY_TYPES:
            for item in body.get(kind) or []:
                if not isinstance(item, dict):
                    continue
                url, user = item.get("callbackURL"), item.get("userId")
                if not isinstance(url, str) or not user:
                    raise BadRequest(f"A {kind} ping without userId or callbackURL.")
                if not same_origin(url, api):
                    log.warning("garmin: a ping to pull from another host, refused",
                                extra={"garmin_user": str(user), "summary_type": kind})  # fmt: skip
                    raise BadRequest("A callbackURL is not on the configured Garmin API host.")
                out.append(Ping(kind, str(user), url))
        return out

    async def pull(self, pings: list[Ping]) -> None:
        """Pull each ping's summaries for each connection of its user and store them
        (after the answer to Garmin: failures end their runs and are logged)."""
        for ping in pings:
            for connection, syncs in await self._targets(ping.user_id):
                try:
                    await self._pull_one(ping, connection, syncs)
                except Exception:
                    log.exception("garmin: a pull failed", extra={"summary_type": ping.kind,
                                  "connection": str(connection.id)})  # fmt: skip

    async def _pull_one(self, ping: Ping, connection: Connection,
                        syncs: list[DeviceSync]) -> None:  # fmt: skip
        if not syncs:
            log.info("garmin: a ping for a connection with no imported device, ignored",
                     extra={"connection": str(connection.id)})  # fmt: skip
            return
        if not set(SUMMARY_METRICS[ping.kind]) & set(connection.consent):
            extra = {"connection": str(connection.id), "summary_type": ping.kind}
            log.info("garmin: a ping for data not consented to, not pulled", extra=extra)
            return
        opened = [(sync, await self.runs.open(sync, "garmin:ping")) for sync in syncs]
        try:
            async with VendorSession(self.tokens, self.settings, self.connector,
                                     connection.id) as vendor:  # fmt: skip
                items = await vendor.call(functools.partial(self.connector.pull, ping.url))
        except Exception as exc:  # the message names no address (it carries a token)
            why = f"HTTP {exc.status}" if isinstance(exc, VendorError) else type(exc).__name__
            for _, run_id in opened:
                await self.runs.fail(run_id, f"the pull from Garmin failed ({why})")
            return
        found = [s for s in (summary(ping.kind, i) for i in items) if s is not None]
        found = [s for s in found if s.user_id == ping.user_id]
        new = await self._new(connection, found)
        statuses = [await self.runs.complete(run_id, sync, _pages(new), connection.consent)
                    for sync, run_id in opened]  # fmt: skip
        if new and all(s == "completed" for s in statuses):
            await self._remember(connection, syncs[0], new)

    # --- deregistration -----------------------------------------------------------------

    async def deregister(self, body: dict[str, Any]) -> int:
        """Revoke the connections of users who ended their grant at Garmin; how many."""
        users = {str(i["userId"]) for i in body.get("deregistrations") or []
                 if isinstance(i, dict) and i.get("userId")}  # fmt: skip
        revoked = 0
        async with self.uow() as uow:
            repo = GarminRepository(uow.session)
            for user_id in sorted(users):
                connections = await repo.connections(user_id)
                if not connections:
                    log.info("garmin: a deregistration for a user nobody connected, ignored",
                             extra={"garmin_user": user_id})  # fmt: skip
                for connection in connections:
                    await repo.revoke(connection.id, "the user deregistered at Garmin",
                                      self.clock())  # fmt: skip
                    revoked += 1
            await uow.commit()
        return revoked

    # --- permissions ------------------------------------------------------------------

    async def permissions(self, body: dict[str, Any]) -> int:
        """Users whose grant's permissions changed at Garmin: the connections' scopes
        become them and their consent loses what they no longer allow; how many
        connections changed."""
        latest: dict[str, tuple[float, list[str]]] = {}
        for item in body.get("userPermissionsChange") or []:
            if not isinstance(item, dict) or not item.get("userId"):
                continue
            perms = item.get("permissions")
            if not isinstance(perms, list):
                raise BadRequest("A userPermissionsChange without its permissions.")
            at = float(item.get("changeTimeInSeconds") or 0)
            user = str(item["userId"])
            if user not in latest or at >= latest[user][0]:
                latest[user] = (at, [str(p) for p in perms])
        changed = 0
        async with self.uow() as uow:
            repo = GarminRepository(uow.session)
            for user_id, (_, perms) in sorted(latest.items()):
                for connection in await repo.connections(user_id):
                    if connection.status == "revoked":
                        continue
                    allowed = permitted(perms)
                    dropped = [m for m in connection.consent if m not in allowed]
                    connection.scopes = perms
                    connection.consent = [m for m in connection.consent if m in allowed]
                    changed += 1
                    log.info("garmin: the user's permissions changed", extra={
                        "connection": str(connection.id), "permissions": perms,
                        "consent_dropped": dropped})  # fmt: skip
            await uow.commit()
        return changed
