"""Latest values in Redis, shared by every process of the installation.

Keys (``p`` is the installation's prefix, ``FIELDWATCH_REDIS_PREFIX``):

- ``p:latest:<ws>:<device>``: hash metric → the entry as JSON;
- ``p:latest:<ws>:<device>:ts``: hash metric → the entry's timestamp (integer µs), what
  the write compares: an older reading never replaces a newer one, whichever process
  writes it and in whatever order;
- ``p:latest:<ws>:devices``: set of the workspace's device ids (what a fleet snapshot
  reads); ``p:latest:where``: hash device → workspace (to forget a device by id);
- ``p:latest:loaded``: set once the database was loaded into Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from fieldwatch.monitoring.presence_state import to_us

if TYPE_CHECKING:
    from redis.asyncio import Redis

Entry = dict[str, Any]
Item = tuple[uuid.UUID, str, str, tuple[datetime, Entry]]  # workspace, device, metric, entry

# KEYS: the workspace's device set, where, then per item: values hash, timestamps hash.
# ARGV: workspace, then per item: device, metric, timestamp (µs), entry JSON.
_PUT = """
local ws, n = ARGV[1], 0
for i = 3, #KEYS, 2 do
  local a = (i - 3) * 2 + 2
  local dev, metric, ts = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local old = redis.call('HGET', KEYS[i + 1], metric)
  if (not old) or tonumber(ts) >= tonumber(old) then
    redis.call('HSET', KEYS[i], metric, ARGV[a + 3])
    redis.call('HSET', KEYS[i + 1], metric, ts)
    n = n + 1
  end
  redis.call('SADD', KEYS[1], dev)
  redis.call('HSET', KEYS[2], dev, ws)
end
return n
"""

BATCH = 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLatest:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:latest"
        self.where = f"{self.prefix}:where"
        self.loaded = f"{self.prefix}:loaded"
        self._put = redis.register_script(_PUT)

    def values_key(self, workspace_id: uuid.UUID | str, device: str) -> str:
        return f"{self.prefix}:{workspace_id}:{device}"

    def devices_key(self, workspace_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:{workspace_id}:devices"

    async def filled(self) -> bool:
        return bool(await self.redis.exists(self.loaded))

    async def mark_filled(self) -> None:
        await self.redis.set(self.loaded, "1")

    async def put(self, items: Iterable[Item]) -> int:
        """Write entries where they are newer than Redis's; one round trip. Returns how
        many were written."""
        by_ws: dict[uuid.UUID, list[Item]] = {}
        for item in items:
            by_ws.setdefault(item[0], []).append(item)
        if not by_ws:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for ws, ws_items in by_ws.items():
                for start in range(0, len(ws_items), BATCH):
                    keys = [self.devices_key(ws), self.where]
                    args: list[str | int | bytes] = [str(ws)]
                    for _ws, device, metric, (ts, value) in ws_items[start : start + BATCH]:
                        key = self.values_key(ws, device)
                        keys += [key, f"{key}:ts"]
                        args += [device, metric, to_us(ts), orjson.dumps(value)]
                    await self._put(keys=keys, args=args, client=pipe)
            return sum(int(n) for n in await pipe.execute())

    async def snapshot(
        self,
        workspace_id: uuid.UUID,
        device_ids: Iterable[str] | None,
        metrics: Sequence[str],
    ) -> dict[str, dict[str, Entry]] | None:
        """The workspace's entries; None when Redis holds nothing of the installation."""
        if device_ids is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(self.loaded)
                pipe.smembers(self.devices_key(workspace_id))
                loaded, members = await pipe.execute()
            if not loaded:
                return None
            devices = sorted(_text(d) for d in members)
        else:
            devices = list(dict.fromkeys(device_ids))
            if not await self.filled():
                return None
        if not devices:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for device in devices:
                key = self.values_key(workspace_id, device)
                if metrics:
                    pipe.hmget(key, list(metrics))
                else:
                    pipe.hgetall(key)
            results = await pipe.execute()
        out: dict[str, dict[str, Entry]] = {}
        for device, got in zip(devices, results, strict=True):
            if metrics:
                values = {m: orjson.loads(v) for m, v in zip(metrics, got, strict=True) if v}
            else:
                values = {_text(m): orjson.loads(v) for m, v in got.items()}
            if values:
                out[device] = values
        return out

    async def forget(self, device: str) -> None:
        ws = await self.redis.hget(self.where, device)
        if ws is None:
            return
        key = self.values_key(_text(ws), device)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key, f"{key}:ts")
            pipe.srem(self.devices_key(_text(ws)), device)
            pipe.hdel(self.where, device)
            await pipe.execute()
