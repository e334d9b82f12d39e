"""The readings of one incoming batch, and why any of them were refused.

A batch holds candidates (readings that passed decoding, one ``Candidate`` each, no
per-reading model objects) and rejections (``{index, reason}``, plus ``metric`` where
useful). A reading refused for any reason never stops the others. A batch may hold the
readings of several devices (a gateway's upload, an MQTT batch): ``owners`` then tells
which device each item came from, so that a device's refusal replaces the readings of
its items by one rejection per item.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple


class Candidate(NamedTuple):
    """One decoded reading. ``position``: its index in the request (or its item's, in a
    batch of items), as the rejections name it."""

    position: int
    device_id: uuid.UUID
    metric: str
    ts: datetime
    value: float | bool | str
    unit: str | None
    quality: int | None


Rejection = dict[str, Any]


class Batch:
    """Readings and rejections of one request (or of one workspace's share of a batch)."""

    __slots__ = ("candidates", "owners", "rejected", "stamps", "total")

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []
        self.rejected: list[Rejection] = []
        self.total = 0
        #: item index → the device it came from (batches of several devices' items)
        self.owners: dict[int, uuid.UUID] = {}
        #: raw timestamp → its UTC datetime, or why it is none (batches repeat stamps)
        self.stamps: dict[Any, datetime | str] = {}

    def reject(self, index: int, reason: str, metric: str | None = None) -> None:
        item: Rejection = {"index": index, "reason": reason}
        if metric is not None:
            item["metric"] = metric
        self.rejected.append(item)

    def next_item(self, owner: uuid.UUID) -> int:
        """The index of a new item from ``owner``."""
        index = len(self.owners)
        self.owners[index] = owner
        return index

    def add_item(self, other: Batch, owner: uuid.UUID) -> None:
        """Take in ``other``'s readings and rejections as one item from ``owner``."""
        index = self.next_item(owner)
        self.candidates.extend(c._replace(position=index) for c in other.candidates)
        self.rejected.extend({**r, "index": index} for r in other.rejected)
        self.total += other.total

    def devices(self) -> set[uuid.UUID]:
        """Every device the batch holds readings or items of. Told apart by identity
        first: a device's readings share its id object, and a UUID's hash is computed in
        Python on every lookup."""
        ids = {id(d): d for d in map(itemgetter(1), self.candidates)}
        ids.update((id(d), d) for d in self.owners.values())
        return set(ids.values())

    def refuse(self, refused: Mapping[uuid.UUID, str]) -> None:
        """Drop the readings of refused devices (device → reason): each item of theirs
        becomes one rejection with the reason, in place of whatever it held."""
        if not refused:
            return
        items = {i: refused[d] for i, d in self.owners.items() if d in refused}
        self.candidates = [c for c in self.candidates if c.device_id not in refused]
        self.rejected = [r for r in self.rejected if r["index"] not in items]
        for index, reason in items.items():
            self.reject(index, reason)

    def keep_within(self, oldest: datetime, latest: datetime) -> None:
        """Move readings stamped after ``latest`` or before ``oldest`` (the retention
        window) to the rejections."""
        keep: list[Candidate] = []
        for c in self.candidates:
            ts = c.ts
            if ts > latest:
                self.reject(c.position, "timestamp is more than 5 minutes in the future", c.metric)
            elif ts < oldest:
                self.reject(
                    c.position, "timestamp is older than the workspace's retention window", c.metric
                )
            else:
                keep.append(c)
        self.candidates = keep

    def drop(self, keys: set[tuple[uuid.UUID, str]], reason: str) -> None:
        """Move the readings of these (device, metric) series to the rejections."""
        keep: list[Candidate] = []
        for c in self.candidates:
            if (c.device_id, c.metric) in keys:
                self.reject(c.position, reason, c.metric)
            else:
                keep.append(c)
        self.candidates = keep
