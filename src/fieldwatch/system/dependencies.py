"""What the operational endpoints read of the app besides the domains' own components:
the device edge (set at start-up) and the Redis client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fieldwatch.core.components import Slot
from fieldwatch.transports.edge import DeviceEdge

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: The device transports of this process; set by the app's start-up (none before).
EDGE: Slot[DeviceEdge] = Slot("edge")
#: Shared presence and latest values, when ``FIELDWATCH_REDIS_URL`` is set.
REDIS: Slot[Redis | None] = Slot("redis")
