"""Device credentials and access rules on an external Mosquitto 2 (``FIELDWATCH_MQTT_URL``)
through its dynamic-security plugin (the admin connection is ``dynsec_admin``).

What the broker holds:

* a client per device (username = device id, password = its agent token, ``textname`` =
  the token's id, ``clientid`` = the device id, so the broker refuses it any other client
  id and nobody else can log in as it) with its own role ``fieldwatch-device-{id}``:
  Mosquitto 2.0 does not substitute ``%u``/``%c`` in dynamic-security ACLs (that comes
  with 2.1), so one shared device role cannot limit a device to its own topics;
* a client per provisioning key (username = the key's first 12 characters, its prefix;
  password = the key; ``textname`` = the key's id) in the group
  ``fieldwatch-provisioning``, with role ``fieldwatch-provision``, so the keys of every
  workspace work side by side;
* optional control and service clients with roles ``fieldwatch-control`` and
  ``fieldwatch-service``;
* default access "deny" for publishing, receiving and subscribing (unsubscribing stays
  allowed): anything not granted by a role is refused. Clients created by other means
  need roles that grant what they do.

Changing a client's password, disabling or deleting it makes Mosquitto drop the clients
connected with that username.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.acl import PrincipalKind, dynsec_role_acls
from fieldwatch.transports.mqtt.dynsec_admin import DynsecAdmin, DynsecError

__all__ = ["DynsecError", "DynsecManager", "device_role"]

log = logging.getLogger(__name__)

DEVICE_ROLE_PREFIX = "fieldwatch-device-"
PROVISION_GROUP = "fieldwatch-provisioning"
#: The one login every provisioning key shared before each key had its own; removed.
LEGACY_PROVISION_USERNAME = "provision"
ROLES: dict[PrincipalKind, str] = {
    "provision": "fieldwatch-provision",
    "control": "fieldwatch-control",
    "service": "fieldwatch-service",
}
DEFAULT_ACCESS = [
    {"acltype": "publishClientSend", "allow": False},
    {"acltype": "publishClientReceive", "allow": False},
    {"acltype": "subscribe", "allow": False},
    {"acltype": "unsubscribe", "allow": True},
]

_EXISTS = "already exists"
_NOT_FOUND = "not found"


def device_role(device_id: str) -> str:
    """The role holding one device's ACLs."""
    if not topics.is_valid_id(device_id):
        raise ValueError(f"invalid device id: {device_id!r}")
    return DEVICE_ROLE_PREFIX + device_id


def _require_client_id(username: str, clientid: str, disabled: bool) -> list[dict[str, Any]]:
    """Commands that make ``username`` log in with ``clientid`` only, and drop what is
    connected under it now (unless it is disabled, and so already dropped)."""
    commands: list[dict[str, Any]] = [
        {"command": "setClientId", "username": username, "clientid": clientid}
    ]
    if not disabled:
        commands += [
            {"command": "disableClient", "username": username},
            {"command": "enableClient", "username": username},
        ]
    return commands


def _acl_set(acls: list[dict[str, Any]]) -> set[tuple[str, str, bool, int]]:
    return {(str(a.get("acltype")), str(a.get("topic")), bool(a.get("allow")),
             int(a.get("priority") or 0)) for a in acls}  # fmt: skip


def _fingerprint(secret: str) -> str:
    """Tells whether a stored password changed, without revealing it."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


class DynsecManager(DynsecAdmin):
    """What Fieldwatch keeps in Mosquitto's dynamic security."""

    async def _get_client(self, username: str) -> dict[str, Any] | None:
        response = await self._one({"command": "getClient", "username": username}, _NOT_FOUND)
        if response.get("error"):
            return None
        client = response.get("data", {}).get("client")
        return client if isinstance(client, dict) else None

    async def _ensure_role(self, rolename: str, acls: list[dict[str, Any]]) -> None:
        created = await self._one(
            {"command": "createRole", "rolename": rolename, "acls": acls}, _EXISTS
        )
        if created.get("error"):
            await self._one({"command": "modifyRole", "rolename": rolename, "acls": acls})

    async def _ensure_client(
        self,
        username: str,
        password: str,
        rolename: str,
        textname: str,
        *,
        clientid: str | None = None,
    ) -> bool:
        """Create the client, or update it when its ``textname`` (the credential's id)
        or its required client id differ; returns whether anything changed."""
        roles = [{"rolename": rolename}]
        create: dict[str, Any] = {
            "command": "createClient",
            "username": username,
            "password": password,
            "textname": textname,
            "roles": roles,
        }
        if clientid is not None:
            create["clientid"] = clientid
        created = await self._one(create, _EXISTS)
        if not created.get("error"):
            return True
        client = await self._get_client(username) or {}
        commands: list[dict[str, Any]] = []
        if client.get("textname") != textname:
            # setClientPassword also drops the clients connected with the old password
            commands += [
                {"command": "setClientPassword", "username": username, "password": password},
                {"command": "modifyClient", "username": username, "textname": textname},
            ]
        if clientid is not None and client.get("clientid") != clientid:
            commands += _require_client_id(username, clientid, bool(client.get("disabled")))
        if rolename not in {r.get("rolename") for r in client.get("roles", [])}:
            commands.append({"command": "addClientRole", "username": username, **roles[0]})
        if commands:
            await self.execute(commands)
        return bool(commands)

    # -- public API ------------------------------------------------------------------

    async def ensure_roles(self) -> None:
        """Create (or refresh) the provision, control and service roles and the group of
        provisioning logins, remove the single ``provision`` login of earlier versions
        and make everything not granted denied. Idempotent."""
        for kind, rolename in ROLES.items():
            await self._ensure_role(rolename, dynsec_role_acls(kind))
        await self._one({"command": "createGroup", "groupname": PROVISION_GROUP}, _EXISTS)
        legacy = await self._get_client(LEGACY_PROVISION_USERNAME)
        if legacy and ROLES["provision"] in {r.get("rolename") for r in legacy.get("roles", [])}:
            await self.delete_login(LEGACY_PROVISION_USERNAME)
        await self._one({"command": "setDefaultACLAccess", "acls": DEFAULT_ACCESS})

    async def upsert_device(self, device_id: str, token: str, token_id: str) -> None:
        """Let ``device_id`` connect with ``token`` and client id ``device_id`` only:
        creates its role and client, or sets the new token (dropping sessions that used
        the old one) when ``token_id`` differs from the one the broker holds. Does not
        enable a disabled device."""
        role = device_role(device_id)
        if not token or not token_id:
            raise ValueError("a device needs a token and its id")
        await self._ensure_role(role, dynsec_role_acls("device", device_id))
        if await self._ensure_client(device_id, token, role, token_id, clientid=device_id):
            log.info("MQTT broker: device %s now uses token %s", device_id, token_id)

    async def _listed(self, command: str, key: str, page: int) -> AsyncIterator[list[Any]]:
        """Every item of a ``listClients``/``listRoles`` answer, a page at a time."""
        offset = 0
        while True:
            listed = await self._one(
                {"command": command, "verbose": True, "count": page, "offset": offset}
            )
            items = listed.get("data", {}).get(key) or []
            yield items
            if len(items) < page:
                return
            offset += page

    async def require_device_client_ids(self, page: int = 1000) -> int:
        """Make every device client (one with its ``fieldwatch-device-`` role) accept only
        its device id as client id, dropping sessions made with another one: devices
        created before the broker required it. Returns how many were changed."""
        changed = 0
        async for clients in self._listed("listClients", "clients", page):
            commands: list[dict[str, Any]] = []
            for client in clients:
                name = str(client.get("username", ""))
                roles = {r.get("rolename") for r in client.get("roles", [])}
                if not topics.is_valid_id(name) or DEVICE_ROLE_PREFIX + name not in roles:
                    continue
                if client.get("clientid") != name:
                    commands += _require_client_id(name, name, bool(client.get("disabled")))
                    changed += 1
            if commands:
                await self.execute(commands)
        return changed

    async def refresh_device_roles(self, page: int = 1000) -> int:
        """Give every device role the ACLs of this version (the device's topics grow
        with the protocol, e.g. firmware update reports); returns how many changed."""
        changed = 0
        async for roles in self._listed("listRoles", "roles", page):
            commands: list[dict[str, Any]] = []
            for role in roles:
                name = str(role.get("rolename", ""))
                device_id = name.removeprefix(DEVICE_ROLE_PREFIX)
                if device_id == name or not topics.is_valid_id(device_id):
                    continue
                acls = dynsec_role_acls("device", device_id)
                if _acl_set(role.get("acls") or []) != _acl_set(acls):
                    commands.append({"command": "modifyRole", "rolename": name, "acls": acls})
            if commands:
                await self.execute(commands)
                changed += len(commands)
        return changed

    async def device_logins(self, page: int = 1000) -> dict[str, str]:
        """The device clients the broker holds (those with their ``fieldwatch-device-``
        role): device id → the id of the token it holds (``""`` if none)."""
        out: dict[str, str] = {}
        async for clients in self._listed("listClients", "clients", page):
            for client in clients:
                name = str(client.get("username", ""))
                roles = {r.get("rolename") for r in client.get("roles", [])}
                if topics.is_valid_id(name) and DEVICE_ROLE_PREFIX + name in roles:
                    out[name] = str(client.get("textname") or "")
        return out

    async def device_token_id(self, device_id: str) -> str | None:
        """The id of the token the broker holds for ``device_id``, if any."""
        client = await self._get_client(device_id)
        textname = client.get("textname") if client else None
        return str(textname) if textname else None

    async def disable_device(self, device_id: str) -> None:
        """Refuse the device's connections from now on and drop its live ones."""
        await self._one({"command": "disableClient", "username": device_id}, _NOT_FOUND)

    async def enable_device(self, device_id: str) -> None:
        await self._one({"command": "enableClient", "username": device_id}, _NOT_FOUND)

    async def delete_device(self, device_id: str) -> None:
        """Remove the device's client (dropping its sessions) and role. Idempotent."""
        await self.execute(
            [
                {"command": "deleteClient", "username": device_id},
                {"command": "deleteRole", "rolename": device_role(device_id)},
            ],
            tolerate=(_NOT_FOUND,),
        )

    async def upsert_provisioning_login(self, username: str, key: str, key_id: str) -> None:
        """Let a provisioning key log in: username = its prefix, password = the key,
        ``textname`` = its id. Setting the same key again changes nothing; a new secret
        for the key replaces the old one (dropping its sessions). Raises
        ``DynsecError`` if another key already holds that username."""
        if not username or not key or not key_id:
            raise ValueError("a provisioning login needs a username, a key and its id")
        fingerprint, role = _fingerprint(key), ROLES["provision"]
        client = await self._get_client(username)
        if client is None:
            await self._one(
                {"command": "createClient", "username": username, "password": key,
                 "textname": key_id, "textdescription": fingerprint,
                 "roles": [{"rolename": role}], "groups": [{"groupname": PROVISION_GROUP}]}
            )  # fmt: skip
            return
        if client.get("textname") != key_id:
            raise DynsecError("createClient", f"login {username} belongs to another key")
        commands: list[dict[str, Any]] = []
        if client.get("textdescription") != fingerprint:
            commands += [
                {"command": "setClientPassword", "username": username, "password": key},
                {"command": "modifyClient", "username": username, "textdescription": fingerprint},
            ]
        if role not in {r.get("rolename") for r in client.get("roles", [])}:
            commands.append({"command": "addClientRole", "username": username, "rolename": role})
        if PROVISION_GROUP not in {g.get("groupname") for g in client.get("groups", [])}:
            commands.append(
                {"command": "addGroupClient", "username": username, "groupname": PROVISION_GROUP}
            )
        if commands:
            await self.execute(commands)

    async def provisioning_logins(self) -> dict[str, str]:
        """The provisioning logins the broker holds: username → key id."""
        group = await self._one({"command": "getGroup", "groupname": PROVISION_GROUP}, _NOT_FOUND)
        members = (group.get("data") or {}).get("group", {}).get("clients") or []
        names = [str(m.get("username")) for m in members if m.get("username")]
        if not names:
            return {}
        found = await self.execute(
            [{"command": "getClient", "username": n} for n in names], tolerate=(_NOT_FOUND,)
        )
        out: dict[str, str] = {}
        for name, response in zip(names, found, strict=True):
            client = (response.get("data") or {}).get("client") or {}
            out[name] = str(client.get("textname") or "")
        return out

    async def delete_login(self, username: str) -> None:
        """Remove a client (dropping its sessions). Idempotent."""
        if username == self.username:
            raise ValueError("refusing to delete the admin login")
        await self._one({"command": "deleteClient", "username": username}, _NOT_FOUND)

    async def upsert_service_client(
        self, username: str, password: str, kind: Literal["provision", "control", "service"]
    ) -> None:
        """A client with the role of ``kind``; its password is only reset (dropping its
        sessions) when it changed."""
        if not password:
            raise ValueError("a password is required")
        await self._ensure_client(username, password, ROLES[kind], _fingerprint(password))

    async def kick(self, username: str) -> bool:
        """Drop the live connections of ``username`` (it may reconnect). Returns False
        if there is no such client or it is disabled (and so already dropped)."""
        if username == self.username:
            raise ValueError("refusing to kick the admin connection")
        client = await self._get_client(username)
        if client is None or client.get("disabled"):
            return False
        await self.execute(
            [
                {"command": "disableClient", "username": username},
                {"command": "enableClient", "username": username},
            ]
        )
        return True
