"""Who an MQTT client of the embedded broker is, checked against Fieldwatch's own
credentials:

- username = a device id, password = one of its agent tokens → that device (whose client
  id, if it sends one, must be its device id: see ``embedded``); with
  ``FIELDWATCH_MQTT_DEVICE_LOGINS=on_request`` only a token created for MQTT;
- username = a provisioning key's prefix (its first 12 characters; ``provision`` is also
  accepted), password = the key, client id = the id the client registers under (its
  serial number, or a one-time request id) → a provisioning client;
- username ``control``, password = an API key with the operator role → a control
  service, which may queue commands for its workspace's devices;
- Fieldwatch's own gateway client, with a random password made at start-up.

Topic rules are those of ``acl``; a control client is also held to its workspace.
The authority remembers which token each connected device used, so that a revoked
token (or a retired device) disconnects its session at once.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass

from fieldwatch.auth.roles import Role
from fieldwatch.core.credentials import display_prefix
from fieldwatch.core.errors import AppError, Unauthorized
from fieldwatch.core.events import CREDENTIALS_CHANGED, Event
from fieldwatch.core.ttlcache import TTLCache
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.events import DEVICE_STATUS_CHANGED
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.provisioning import PROVISIONING_KEY_PREFIX, ProvisioningService
from fieldwatch.devices.service import DeviceService
from fieldwatch.transports.edge import DeviceEdge
from fieldwatch.transports.mqtt import acl, topics
from fieldwatch.transports.mqtt.acl import Action, Principal

log = logging.getLogger(__name__)

#: The provisioning login of earlier versions (any key); a key's prefix works too.
PROVISION_USERNAME = "provision"
CONTROL_USERNAME = "control"
SERVICE_USERNAME = "fieldwatch-gateway"


@dataclass(frozen=True, slots=True)
class DeviceLogin:
    workspace_id: uuid.UUID
    token: str  # kept to re-check on revocations; never logged


class DeviceWorkspaces:
    """Device id → its workspace. A device never changes workspace: the cache's expiry
    only bounds its memory."""

    def __init__(self, edge: DeviceEdge) -> None:
        self.edge = edge
        self._cache: TTLCache[str, uuid.UUID] = TTLCache(3600.0, max_entries=200_000)

    async def get(self, device_id: str) -> uuid.UUID | None:
        hit = self._cache.get(device_id)
        if hit is not None:
            return hit
        try:
            key = uuid.UUID(device_id)
        except ValueError:
            return None
        async with self.edge.uow() as uow:
            found = await DeviceService(uow).devices.workspace_of(key)
        if found is not None:
            self._cache.put(device_id, found)
        return found


class FieldwatchAuthority:
    def __init__(self, edge: DeviceEdge, workspaces: DeviceWorkspaces) -> None:
        self.edge = edge
        self.workspaces = workspaces
        self.service_password = secrets.token_urlsafe(24)
        #: device id → how it logged in (while it may be connected)
        self.devices: dict[str, DeviceLogin] = {}
        #: serial → provisioning key, for the register message that follows the login
        self.provisioning: dict[str, str] = {}
        #: control client name → its workspace
        self.control: dict[str, uuid.UUID] = {}
        self.broker: object | None = None  # set by the gateway: has ``disconnect(name)``
        self._unsubscribe = [
            edge.bus.subscribe(CREDENTIALS_CHANGED, self._on_credentials_changed),
            edge.bus.subscribe(DEVICE_STATUS_CHANGED, self._on_status_changed),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    async def authenticate(
        self, client_id: str | None, username: str | None, password: str | None
    ) -> Principal | None:
        if not username or not password:
            return None
        if username == SERVICE_USERNAME:
            if hmac.compare_digest(password, self.service_password):
                return Principal("service", username)
            return None
        try:
            async with self.edge.uow() as uow:
                if username == PROVISION_USERNAME or username.startswith(PROVISIONING_KEY_PREFIX):
                    return await self._provision(uow, client_id, username, password)
                if username == CONTROL_USERNAME:
                    return await self._control(uow, client_id, password)
                return await self._device(uow, username, password)
        except (Unauthorized, AppError) as exc:
            log.info("MQTT login refused for %s: %s", _safe(username), exc)
            return None

    async def _device(self, uow: UnitOfWork, username: str, password: str) -> Principal | None:
        principal = await DeviceService(uow).authenticate_device(password)
        if str(principal.device_id) != username:
            log.info("MQTT login refused: the token belongs to another device than %s", username)
            return None
        if not principal.mqtt and self.edge.settings.mqtt_device_logins == "on_request":
            log.info("MQTT login refused for %s: its token was not created for MQTT", username)
            return None
        await uow.commit()  # the token's last use
        self.devices[username] = DeviceLogin(principal.workspace_id, password)
        return Principal("device", username)

    async def _provision(
        self, uow: UnitOfWork, client_id: str | None, username: str, password: str
    ) -> Principal | None:
        if not client_id or not topics.is_valid_id(client_id):
            log.info("MQTT provisioning login refused: the client id must be the serial number")
            return None
        if username != PROVISION_USERNAME and display_prefix(password) != username:
            log.info("MQTT provisioning login refused: the username is not the key's prefix")
            return None
        await ProvisioningService(uow).authenticate_key(password)
        self.provisioning[client_id] = password
        return Principal("provision", client_id)

    async def _control(
        self, uow: UnitOfWork, client_id: str | None, password: str
    ) -> Principal | None:
        principal = await self.edge.auth_service(uow).authenticate(password, None)
        if principal.kind != "api_key" or not principal.role.allows(Role.operator):
            log.info("MQTT control login refused: it needs an API key with the operator role")
            return None
        name = client_id or f"control-{secrets.token_hex(4)}"
        self.control[name] = principal.workspace_id
        return Principal("control", name)

    async def authorize(self, principal: Principal, action: Action, topic: str) -> bool:
        if not acl.is_allowed(principal, action, topic):
            return False
        if principal.kind != "control":
            return True
        parsed = topics.parse(topic)  # a control topic: its device must be in the workspace
        workspace = self.control.get(principal.name)
        if parsed is None or workspace is None:
            return False
        return await self.workspaces.get(parsed.device_id) == workspace

    # --- revocation -----------------------------------------------------------------

    async def _kick(self, device_id: str, why: str) -> None:
        self.devices.pop(device_id, None)
        disconnect = getattr(self.broker, "disconnect", None)
        if disconnect is not None:
            log.info("MQTT: %s; disconnecting device %s", why, device_id)
            await disconnect(device_id)

    async def _on_credentials_changed(self, event: Event) -> None:
        logins = [(d, g) for d, g in self.devices.items() if g.workspace_id == event.workspace_id]
        for device_id, login in logins:
            async with self.edge.uow() as uow:
                try:
                    await DeviceService(uow).authenticate_device(login.token)
                except Unauthorized:
                    await self._kick(device_id, "its token is no longer valid")

    async def _on_status_changed(self, event: Event) -> None:
        if event.payload.get("status") != DeviceStatus.retired.value or event.subject_id is None:
            return
        if str(event.subject_id) in self.devices:
            await self._kick(str(event.subject_id), "the device was retired")


def _safe(username: str) -> str:
    return username[:64].encode("unicode_escape").decode()
