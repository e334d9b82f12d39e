"""Keeps Mosquitto's dynamic security in step with Fieldwatch's credentials (external
broker with ``FIELDWATCH_MQTT_DYNSEC``):

- a device token issued here becomes the device's broker password (the broker holds the
  newest one per device), with the device id as its only client id; at start every
  device's role gets this version's topics; revoking that token removes the device's
  login, retiring the device disables it (either ends its session);
- a provisioning key created or rotated here becomes a login of its own (username = the
  key's prefix), so the keys of every workspace work side by side; a revoked or rotated
  key's login is removed (``sync_provisioning_logins``, also run at start);
- Fieldwatch's own gateway client, whose password is derived from the installation's
  secret (the same in every process).

With ``FIELDWATCH_MQTT_DEVICE_LOGINS=on_request`` only tokens created for MQTT (``mqtt``)
become logins, and the start removes the logins whose token is gone, revoked, expired or
not for MQTT (``sync_device_logins``): Mosquitto 2.0 rewrites its whole state per change,
so every login makes the next one dearer.

Secrets reach this module only through the edge's ``credential_listeners`` (in process,
never through the event bus); keys and tokens issued before Fieldwatch was pointed at
the broker are not known to it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from fieldwatch.core.clock import utcnow
from fieldwatch.core.credentials import display_prefix
from fieldwatch.core.events import CREDENTIALS_CHANGED, Event
from fieldwatch.devices.events import DEVICE_STATUS_CHANGED
from fieldwatch.devices.models import AgentToken
from fieldwatch.devices.repository import AgentTokenRepository, ProvisioningKeyRepository
from fieldwatch.transports.edge import DeviceEdge
from fieldwatch.transports.mqtt.dynsec import DynsecError, DynsecManager

log = logging.getLogger(__name__)


class DynsecSync:
    def __init__(self, edge: DeviceEdge, manager: DynsecManager) -> None:
        self.edge = edge
        self.manager = manager
        self._unsubscribe: list[Callable[[], None]] = []

    async def start(self, service_username: str) -> str:
        """Connect, set up the roles, make every device client accept only its own
        client id, create the gateway's client and drop stale provisioning logins;
        from then on follow credential changes. Returns the gateway's password."""
        from fieldwatch.auth.tokens import load_or_create_secret

        manager = self.manager
        await manager.start()
        await manager.ensure_roles()
        fixed = await manager.require_device_client_ids()
        if fixed:
            log.info("MQTT broker: %d device logins now accept only their device id", fixed)
        refreshed = await manager.refresh_device_roles()
        if refreshed:
            log.info("MQTT broker: %d device roles given this version's topics", refreshed)
        secret = load_or_create_secret(self.edge.settings).encode()
        password = hmac.new(secret, b"fieldwatch mqtt gateway", hashlib.sha256).hexdigest()
        await manager.upsert_service_client(service_username, password, "service")
        await self.sync_provisioning_logins()
        if self.on_request:
            await self.sync_device_logins()
        self.edge.credential_listeners.append(self.credential_issued)
        bus = self.edge.bus
        self._unsubscribe = [
            bus.subscribe(CREDENTIALS_CHANGED, self._on_credentials),
            bus.subscribe(DEVICE_STATUS_CHANGED, self._on_status),
        ]
        return password

    @property
    def on_request(self) -> bool:
        """Only tokens created for MQTT are broker logins."""
        return self.edge.settings.mqtt_device_logins == "on_request"

    async def start_issuing(self) -> None:
        """Only pass the credentials this process issues on to the broker: an api process
        (the gateways set the broker up and follow revocations)."""
        await self.manager.start()
        self.edge.credential_listeners.append(self.credential_issued)

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.credential_issued in self.edge.credential_listeners:
            self.edge.credential_listeners.remove(self.credential_issued)
        await self.manager.stop()

    async def credential_issued(
        self, kind: str, owner_id: uuid.UUID, credential_id: uuid.UUID, secret: str
    ) -> None:
        """The newest token of a device is its MQTT password (Mosquitto holds one per
        client); each provisioning key is a login of its own."""
        if kind == "device_token":
            if self.on_request and not await self._for_mqtt(owner_id, credential_id):
                return  # not a broker login: the device keeps the one it has, if any
            await self.manager.upsert_device(str(owner_id), secret, str(credential_id))
        elif kind == "provisioning_key":
            try:
                await self.manager.upsert_provisioning_login(
                    display_prefix(secret), secret, str(credential_id)
                )
            except DynsecError as exc:  # two keys with the same 12 first characters
                log.error("MQTT broker: provisioning key %s has no login: %s", credential_id, exc)
            await self.sync_provisioning_logins()  # a rotated key's old login goes

    async def _for_mqtt(self, device_id: uuid.UUID, token_id: uuid.UUID) -> bool:
        async with self.edge.uow() as uow:
            token = await AgentTokenRepository(uow.session).get(device_id, token_id)
        return token is not None and token.mqtt

    async def sync_device_logins(self, batch: int = 1000) -> int:
        """Remove the device logins that should not be there: their token is gone (or
        the device), revoked, expired or not created for MQTT. Returns how many."""
        held = await self.manager.device_logins()
        now = utcnow()
        stale: list[str] = []
        items = list(held.items())
        for start in range(0, len(items), batch):
            chunk = dict(items[start : start + batch])
            ids = {d: _uuid(t) for d, t in chunk.items()}
            async with self.edge.uow() as uow:
                found = await AgentTokenRepository(uow.session).by_ids(
                    [i for i in ids.values() if i is not None]
                )
            for device_id, token_id in ids.items():
                token = found.get(token_id) if token_id is not None else None
                if token is None or str(token.device_id) != device_id or not _usable(token, now):
                    stale.append(device_id)
        if stale:
            why = "token gone, revoked, expired or not for MQTT"
            log.info("MQTT broker: removing %d device logins (%s)", len(stale), why)
        for device_id in stale:
            await self.manager.delete_device(device_id)
        return len(stale)

    async def sync_provisioning_logins(self) -> None:
        """Remove the logins of provisioning keys that are gone, revoked or rotated (the
        login's username is no longer the key's prefix)."""
        logins = await self.manager.provisioning_logins()
        if not logins:
            return
        async with self.edge.uow() as uow:
            keys = ProvisioningKeyRepository(uow.session)
            stale = []
            for username, key_id in logins.items():
                try:
                    key = await keys.by_id(uuid.UUID(key_id))
                except ValueError:
                    key = None
                if key is None or key.revoked_at is not None or key.prefix != username:
                    stale.append(username)
        for username in stale:
            log.info("MQTT broker: removing the login of provisioning key %s…", username)
            await self.manager.delete_login(username)

    async def _on_credentials(self, event: Event) -> None:
        """A token of this device was revoked: if it is the one the broker holds, the
        device's login is removed (which also ends its session; a new token makes it
        again). A provisioning key
        changed: its logins are brought in step."""
        if event.subject_id is None:
            if str(event.payload.get("reason", "")).startswith("provisioning_key"):
                await self.sync_provisioning_logins()
            return
        held = await self.manager.device_token_id(str(event.subject_id))
        if held is None:
            return
        async with self.edge.uow() as uow:
            token = await AgentTokenRepository(uow.session).get(event.subject_id, uuid.UUID(held))
        if token is None or token.revoked_at is not None:
            # removed, not disabled: a disabled client stays so when a new token is set
            log.info("MQTT: device %s's token was revoked; removing its login", event.subject_id)
            await self.manager.delete_device(str(event.subject_id))

    async def _on_status(self, event: Event) -> None:
        if event.subject_id is not None and event.payload.get("status") == "retired":
            await self.manager.disable_device(str(event.subject_id))


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _usable(token: AgentToken, now: datetime) -> bool:
    """A token that may be a broker login (with ``on_request``)."""
    expired = token.expires_at is not None and token.expires_at <= now
    return token.mqtt and token.revoked_at is None and not expired
