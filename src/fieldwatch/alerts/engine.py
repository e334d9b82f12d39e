"""The alert engine: evaluates readings against the rules, watches presence and lifecycle.

Threshold rules are evaluated right after readings are committed (the ingest path calls
``evaluate``; it returns at once when the workspace has no rules). A rule with
``duration_s`` fires once its condition has held that long without a break; a reading
that no longer meets the condition clears the open alert. The offline rule follows the
presence events; leaving ``deployed`` clears a device's alerts, since only deployed
devices raise them.

The rules and the set of open alerts are cached per workspace for a short time and
dropped on rule changes. The "condition holding since" clock is per process: with several
processes, a duration rule sees the readings each process handles. Offline alerts and
clearing on lifecycle changes follow events, in the processes that run jobs
(``subscribe_jobs``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.alerts import events
from fieldwatch.alerts.repository import AlertRepository
from fieldwatch.alerts.rules import RuleView
from fieldwatch.alerts.service import AlertService, view
from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import WORKERS, Event, EventBus
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.models import Device

log = logging.getLogger(__name__)

CACHE_S = 30.0
Key = tuple[uuid.UUID, uuid.UUID]  # (rule id, device id)
#: device id → metric → [(timestamp, value)]
Readings = dict[uuid.UUID, dict[str, list[tuple[datetime, float]]]]


@dataclass
class _Workspace:
    loaded: float
    threshold: list[RuleView]
    offline: RuleView | None
    active: set[Key] = field(default_factory=set)


class AlertEngine:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], bus: EventBus) -> None:
        self.sessionmaker = sessionmaker
        self.bus = bus
        self._ws: dict[uuid.UUID, _Workspace] = {}
        self._pending: dict[Key, datetime] = {}

    def subscribe(self, bus: EventBus) -> None:
        """What every process that evaluates readings follows (its caches)."""
        bus.subscribe(events.RULES_CHANGED, self._on_rules_changed)
        bus.subscribe(events.ALERT_CLEARED, self._on_cleared)

    def subscribe_jobs(self, bus: EventBus) -> None:
        """Offline alerts and clearing on lifecycle changes: a worker's work. One worker
        handles each event, and events that came while none ran wait for one
        (``events.WORKERS``); a repeat (a redelivery) is recognised and changes nothing."""
        bus.subscribe("device.presence_changed", self._on_presence, group=WORKERS)
        bus.subscribe("device.status_changed", self._on_status, group=WORKERS)

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessionmaker, self.bus)

    async def _workspace(self, workspace_id: uuid.UUID) -> _Workspace:
        cached = self._ws.get(workspace_id)
        if cached is not None and time.monotonic() - cached.loaded < CACHE_S:
            return cached
        async with self._uow() as uow:
            service = AlertService(uow)
            offline = await service.ensure_offline_rule(workspace_id)
            rules = await AlertRepository(uow.session).rules(workspace_id, enabled_only=True)
            active = await AlertRepository(uow.session).active_keys(workspace_id)
            await uow.commit()
        state = _Workspace(
            loaded=time.monotonic(),
            threshold=[view(r) for r in rules if r.kind == "threshold"],
            offline=view(offline) if offline.enabled else None,
            active=active,
        )
        self._ws[workspace_id] = state
        return state

    async def _on_rules_changed(self, event: Event) -> None:
        self._ws.pop(event.workspace_id, None)

    async def _on_cleared(self, event: Event) -> None:
        state = self._ws.get(event.workspace_id)
        rule_id = event.payload.get("rule_id")
        if state is not None and rule_id and event.subject_id:
            key = (uuid.UUID(rule_id), event.subject_id)
            state.active.discard(key)
            self._pending.pop(key, None)

    # --- readings ------------------------------------------------------------------------

    def has_rules(self, workspace_id: uuid.UUID) -> bool | None:
        """False when the workspace surely has no threshold rules (cheap pre-check)."""
        cached = self._ws.get(workspace_id)
        if cached is None or time.monotonic() - cached.loaded >= CACHE_S:
            return None
        return bool(cached.threshold)

    async def evaluate(
        self,
        workspace_id: uuid.UUID,
        readings: Readings,
        devices: dict[uuid.UUID, tuple[str, str]],
    ) -> None:
        if self.has_rules(workspace_id) is False:
            return
        state = await self._workspace(workspace_id)
        if not state.threshold:
            return
        plans: list[tuple[RuleView, uuid.UUID, list[list[Any]]]] = []
        for device_id, metrics in readings.items():
            status, type_ = devices.get(device_id, ("", ""))
            if status != DeviceStatus.deployed:
                continue
            for rule in state.threshold:
                values = metrics.get(rule.metric or "")
                if values and rule.applies_to(device_id, type_):
                    actions = self._plan(rule, device_id, values, state)
                    if actions:
                        plans.append((rule, device_id, actions))
        if plans:
            await self._apply(workspace_id, plans, state)

    def _plan(
        self,
        rule: RuleView,
        device_id: uuid.UUID,
        values: list[tuple[datetime, float]],
        state: _Workspace,
    ) -> list[list[Any]]:
        key = (rule.id, device_id)
        active = key in state.active
        actions: list[list[Any]] = []
        for ts, value in sorted(values):
            if rule.breached(value):
                since = self._pending.setdefault(key, ts)
                if (ts - since).total_seconds() >= rule.duration_s:
                    if actions and actions[-1][0] == "trigger":
                        actions[-1][1:] = [value, ts, actions[-1][3] + 1]
                    else:
                        actions.append(["trigger", value, ts, 1])
                    active = True
            else:
                self._pending.pop(key, None)
                if active:
                    actions.append(["clear", value, ts])
                    active = False
        return actions

    async def _apply(
        self,
        workspace_id: uuid.UUID,
        plans: Sequence[tuple[RuleView, uuid.UUID, list[list[Any]]]],
        state: _Workspace,
    ) -> None:
        for attempt in (1, 2):
            try:
                async with self._uow() as uow:
                    service = AlertService(uow)
                    for rule, device_id, actions in plans:
                        for action in actions:
                            if action[0] == "trigger":
                                _, value, ts, times = action
                                await service.trigger(
                                    workspace_id, rule, device_id, value=value, at=ts, times=times
                                )
                                state.active.add((rule.id, device_id))
                            else:
                                _, value, ts = action
                                shown = f"{value:g}"
                                await service.resolve(
                                    device_id, rule.id, f"back to normal ({rule.metric} = {shown})",
                                    ts,
                                )  # fmt: skip
                                state.active.discard((rule.id, device_id))
                    await uow.commit()
                return
            except IntegrityError:
                # Another process opened the same alert at the same moment: count on it.
                if attempt == 2:
                    raise
                log.info("alert opened concurrently; retrying as a repeat")

    # --- presence and lifecycle --------------------------------------------------------------

    async def _device(self, session: AsyncSession, device_id: uuid.UUID) -> Device | None:
        return await session.get(Device, device_id)

    async def _on_presence(self, event: Event) -> None:
        if event.subject_id is None:
            return
        device_id = event.subject_id
        connectivity = event.payload.get("connectivity")
        state = await self._workspace(event.workspace_id)
        rule = state.offline
        async with self._uow() as uow:
            service = AlertService(uow)
            if connectivity == "online":
                if rule is not None:
                    await service.resolve(device_id, rule.id, "back online", event.occurred_at)
                await uow.commit()
                return
            device = await self._device(uow.session, device_id)
            if (
                rule is None
                or device is None
                or device.status != DeviceStatus.deployed
                or not rule.applies_to(device_id, device.type)
            ):
                return
            repo = AlertRepository(uow.session)
            if await repo.triggered_since(rule.id, device_id, event.occurred_at):
                return  # this transition was counted (by another worker): a repeat
            try:
                await service.trigger(
                    event.workspace_id, rule, device_id, value=None, at=event.occurred_at,
                    details={"last_seen": event.payload.get("last_seen")},
                )  # fmt: skip
                await uow.commit()
            except IntegrityError:  # another worker opened it at the same moment
                log.info("offline alert of device %s opened by another process", device_id)
                return
        state.active.add((rule.id, device_id))

    async def _on_status(self, event: Event) -> None:
        if event.subject_id is None or event.payload.get("new_status") == DeviceStatus.deployed:
            return
        async with self._uow() as uow:
            await AlertService(uow).resolve(
                event.subject_id, None,
                f"device no longer deployed ({event.payload.get('new_status')})", utcnow(),
            )  # fmt: skip
            await uow.commit()
        for key in [k for k in self._pending if k[1] == event.subject_id]:
            self._pending.pop(key, None)
