"""Presence state in Redis, shared by every process of the installation.

Keys (``p`` is the installation's prefix, ``FIELDWATCH_REDIS_PREFIX``):

- ``p:presence:<device>``: hash ``ws``, ``c`` (online|offline), ``ls`` (last_seen),
  ``w`` (last_seen as last written to the database), ``to`` (offline timeout);
  times are integer microseconds since the epoch;
- ``p:presence:deadlines``: sorted set of online devices scored by ``ls + to``, so a
  sweep is one ``ZRANGEBYSCORE``;
- ``p:presence:online:<ws>`` and ``p:presence:ws:<ws>``: the workspace's online and
  tracked devices; ``p:presence:dirty``: devices whose ``ls`` is due to be written;
- ``p:presence:loaded``: set once the online devices of the database were loaded.

Every decision (is it online? who wins this transition? is it still overdue?) is one Lua
script, which Redis runs atomically; a script touches only the keys it is given.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fieldwatch.monitoring.presence_state import OFFLINE, US, Seed, from_us, to_us

if TYPE_CHECKING:
    from redis.asyncio import Redis

# A number as an exact integer string (Lua's tostring keeps only 14 digits).
_INT = "local function int(x) return string.format('%.0f', x) end\n"

# KEYS: deadlines, dirty, then one hash per device. ARGV: now, flush age, device ids.
_TOUCH = (
    _INT
    + """
local now, age, out = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
for i = 3, #KEYS do
  local dev = ARGV[i]
  local v = redis.call('HMGET', KEYS[i], 'c', 'ls', 'w', 'to')
  if v[1] == 'online' then
    local ls = tonumber(v[2])
    if now > ls then
      ls = now
      redis.call('HSET', KEYS[i], 'ls', ARGV[1])
    end
    redis.call('ZADD', KEYS[1], 'XX', int(ls + tonumber(v[4])), dev)
    if ls - tonumber(v[3]) >= age then redis.call('SADD', KEYS[2], dev) end
  else
    out[#out + 1] = dev
  end
end
return out
"""
)

# KEYS: deadlines, online set, tracked set, dirty, then one hash per device.
# ARGV: target, now, overdue_only (0|1), workspace, then device id and timeout per device.
# Returns device id and last_seen before ('' if none) of each device that changed.
_CLAIM = (
    _INT
    + """
local target, now, overdue_only, ws = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4]
local out = {}
for i = 5, #KEYS do
  local a = (i - 5) * 2 + 5
  local dev, timeout = ARGV[a], ARGV[a + 1]
  local v = redis.call('HMGET', KEYS[i], 'c', 'ls', 'to')
  if target == 'online' then
    if v[1] == 'online' then
      local ls = tonumber(v[2])
      if now > ls then
        redis.call('HSET', KEYS[i], 'ls', ARGV[2])
        redis.call('ZADD', KEYS[1], 'XX', int(now + tonumber(v[3])), dev)
      end
    else
      redis.call('HSET', KEYS[i], 'ws', ws, 'c', 'online', 'ls', ARGV[2], 'w', ARGV[2],
                 'to', timeout)
      redis.call('ZADD', KEYS[1], int(now + tonumber(timeout)), dev)
      redis.call('SADD', KEYS[2], dev)
      redis.call('SADD', KEYS[3], dev)
      out[#out + 1] = dev
      out[#out + 1] = v[2] or ''
    end
  elseif v[1] == 'online' then
    local ls = tonumber(v[2])
    if (not overdue_only) or now - ls > tonumber(v[3]) then
      redis.call('HSET', KEYS[i], 'c', 'offline', 'w', v[2], 'to', timeout)
      redis.call('ZREM', KEYS[1], dev)
      redis.call('SREM', KEYS[2], dev)
      redis.call('SREM', KEYS[4], dev)
      out[#out + 1] = dev
      out[#out + 1] = v[2]
    end
  end
end
return out
"""
)

# KEYS: deadlines, then one hash per device. ARGV: device id and timeout per device.
_RETIME = (
    _INT
    + """
for i = 2, #KEYS do
  local dev, timeout = ARGV[(i - 2) * 2 + 1], ARGV[(i - 2) * 2 + 2]
  local v = redis.call('HMGET', KEYS[i], 'c', 'ls')
  if v[1] then
    redis.call('HSET', KEYS[i], 'to', timeout)
    if v[1] == 'online' then
      redis.call('ZADD', KEYS[1], int(tonumber(v[2]) + tonumber(timeout)), dev)
    end
  end
end
return 0
"""
)

# KEYS: dirty, then one hash per device. ARGV: flush age, device ids.
# Marks each device written and returns device id and last_seen of those due.
_TAKE = """
local age, out = tonumber(ARGV[1]), {}
for i = 2, #KEYS do
  local dev = ARGV[i]
  local v = redis.call('HMGET', KEYS[i], 'ls', 'w')
  if v[1] and v[2] and tonumber(v[1]) - tonumber(v[2]) >= age then
    redis.call('HSET', KEYS[i], 'w', v[1])
    out[#out + 1] = dev
    out[#out + 1] = v[1]
  end
  redis.call('SREM', KEYS[1], dev)
end
return out
"""

# KEYS: deadlines, then per device: hash, online set, tracked set. ARGV: per device: id,
# workspace, last_seen, timeout. Devices already known are left alone.
_LOAD = (
    _INT
    + """
for i = 2, #KEYS, 3 do
  local a = (i - 2) / 3 * 4 + 1
  local dev, ws, ls, timeout = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'ws', ws, 'c', 'online', 'ls', ls, 'w', ls, 'to', timeout)
    redis.call('ZADD', KEYS[1], int(tonumber(ls) + tonumber(timeout)), dev)
    redis.call('SADD', KEYS[i + 1], dev)
    redis.call('SADD', KEYS[i + 2], dev)
  end
end
return 0
"""
)

BATCH = 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> list[tuple[str, str]]:
    items = [_text(v) for v in flat]
    return list(zip(items[::2], items[1::2], strict=True))


class RedisPresence:
    """Presence shared by every process of the installation through Redis."""

    def __init__(self, redis: Redis, prefix: str, flush_s: float) -> None:
        self.redis = redis
        self.flush_us = int(flush_s * 1_000_000)
        self.prefix = f"{prefix}:presence"
        self.deadlines = f"{self.prefix}:deadlines"
        self.dirty = f"{self.prefix}:dirty"
        self.loaded = f"{self.prefix}:loaded"
        self._touch = redis.register_script(_TOUCH)
        self._claim = redis.register_script(_CLAIM)
        self._retime = redis.register_script(_RETIME)
        self._take = redis.register_script(_TAKE)
        self._load = redis.register_script(_LOAD)

    def key(self, device_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:{device_id}"

    def online_key(self, workspace_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:online:{workspace_id}"

    def tracked_key(self, workspace_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:ws:{workspace_id}"

    async def needs_load(self) -> bool:
        return not await self.redis.exists(self.loaded)

    async def load(self, seeds: Sequence[Seed]) -> None:
        for start in range(0, len(seeds), BATCH):
            keys: list[str] = [self.deadlines]
            args: list[str | int] = []
            for s in seeds[start : start + BATCH]:
                ws = str(s.workspace_id)
                keys += [self.key(s.device_id), self.online_key(ws), self.tracked_key(ws)]
                args += [str(s.device_id), ws, to_us(s.last_seen), s.timeout // US]
            await self._load(keys=keys, args=args)
        await self.redis.set(self.loaded, "1")

    async def touch(
        self, workspace_id: uuid.UUID, device_ids: Iterable[uuid.UUID], now: datetime
    ) -> list[uuid.UUID]:
        ids = [str(d) for d in device_ids]
        if not ids:
            return []
        keys = [self.deadlines, self.dirty, *(self.key(d) for d in ids)]
        newly = await self._touch(keys=keys, args=[to_us(now), self.flush_us, *ids])
        return [uuid.UUID(_text(d)) for d in newly]

    async def claim(
        self,
        workspace_id: uuid.UUID,
        timeouts: dict[uuid.UUID, timedelta],
        connectivity: str,
        now: datetime,
        overdue_only: bool = False,
    ) -> dict[uuid.UUID, datetime | None]:
        if not timeouts:
            return {}
        ws = str(workspace_id)
        keys = [self.deadlines, self.online_key(ws), self.tracked_key(ws), self.dirty]
        args: list[str | int] = [connectivity, to_us(now), int(overdue_only), ws]
        for device_id, timeout in timeouts.items():
            keys.append(self.key(device_id))
            args += [str(device_id), timeout // US]
        won = await self._claim(keys=keys, args=args)
        return {uuid.UUID(d): (from_us(ls) if ls else None) for d, ls in _pairs(won)}

    async def overdue(self, now: datetime) -> dict[uuid.UUID, list[uuid.UUID]]:
        # Strictly before now: offline once silent for *more* than the timeout.
        ids = [_text(d) for d in await self.redis.zrangebyscore(
            self.deadlines, "-inf", f"({to_us(now)}")]  # fmt: skip
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in ids:
                pipe.hget(self.key(d), "ws")
            workspaces = await pipe.execute()
        by_ws: dict[uuid.UUID, list[uuid.UUID]] = {}
        orphans = []
        for d, ws in zip(ids, workspaces, strict=True):
            if ws is None:
                orphans.append(d)  # forgotten meanwhile
            else:
                by_ws.setdefault(uuid.UUID(_text(ws)), []).append(uuid.UUID(d))
        if orphans:
            await self.redis.zrem(self.deadlines, *orphans)
        return by_ws

    async def _field(self, device_ids: Sequence[uuid.UUID], name: str) -> list[Any]:
        if not device_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in device_ids:
                pipe.hget(self.key(d), name)
            return list(await pipe.execute())

    async def connectivity_of(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        values = await self._field(device_ids, "c")
        return {
            d: _text(v) if v is not None else OFFLINE
            for d, v in zip(device_ids, values, strict=True)
        }

    async def last_seen_of(
        self, device_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, datetime | None]:
        values = await self._field(device_ids, "ls")
        return {
            d: from_us(v) if v is not None else None
            for d, v in zip(device_ids, values, strict=True)
        }

    async def online_in(self, workspace_id: uuid.UUID) -> set[uuid.UUID]:
        return {uuid.UUID(_text(d)) for d in await self.redis.smembers(
            self.online_key(workspace_id))}  # fmt: skip

    async def tracked_in(self, workspace_id: uuid.UUID) -> list[uuid.UUID]:
        return [uuid.UUID(_text(d)) for d in await self.redis.smembers(
            self.tracked_key(workspace_id))]  # fmt: skip

    async def set_timeouts(self, timeouts: dict[uuid.UUID, timedelta]) -> None:
        items = list(timeouts.items())
        for start in range(0, len(items), BATCH):
            keys = [self.deadlines]
            args: list[str | int] = []
            for device_id, timeout in items[start : start + BATCH]:
                keys.append(self.key(device_id))
                args += [str(device_id), timeout // US]
            await self._retime(keys=keys, args=args)

    async def take_unwritten(self, min_age: timedelta) -> list[tuple[uuid.UUID, datetime]]:
        ids = [_text(d) for d in await self.redis.smembers(self.dirty)]
        out: list[tuple[uuid.UUID, datetime]] = []
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            keys = [self.dirty, *(self.key(d) for d in chunk)]
            taken = await self._take(keys=keys, args=[min_age // US, *chunk])
            out += [(uuid.UUID(d), from_us(ls)) for d, ls in _pairs(taken)]
        return out

    async def forget(self, device_id: uuid.UUID) -> None:
        ws = await self.redis.hget(self.key(device_id), "ws")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(device_id))
            pipe.zrem(self.deadlines, str(device_id))
            pipe.srem(self.dirty, str(device_id))
            if ws is not None:
                pipe.srem(self.online_key(_text(ws)), str(device_id))
                pipe.srem(self.tracked_key(_text(ws)), str(device_id))
            await pipe.execute()
