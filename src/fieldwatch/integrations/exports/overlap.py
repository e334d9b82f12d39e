"""Sources that overlap in a health export: the iPhone and the Apple Watch (or, on
Android, Samsung Health and Fitbit) each record the steps they counted, so the same walk
is in the export twice and summing every record double counts it. Apple's Health app
and Android's Health Connect both show one figure by giving the sources an order (Apple:
Health → a data type → Data Sources & Access; Health Connect: Data and access → App
priority, per data category): for any stretch of time only the highest source counts.

Each reader gives its records a rank (lower counts first; sources of the same rank by
name): Apple's export does not carry the user's order, so ``rank`` below applies Apple's
default one, **an Apple Watch before an iPhone before any other device or app** (a
record's ``device`` attribute says ``model:Watch`` or ``model:iPhone``; without one, its
``sourceName`` naming a Watch or an iPhone); Health Connect's export carries the user's
app priority (``health_connect``). A record of a lower source counts only for the part
of its time no higher source covers, its value pro-rated over its length (linearly), at
the start of that part; wholly covered, it is dropped. Records of one source never
cancel each other out. This holds for the cumulative types, where overlaps add up:
steps, distance and time asleep.

Memory stays flat whatever the export's size: the records of those types wait in a
temporary SQLite database beside the export and are resolved at the end in one pass in
time order (a sweep keeping only the records that still overlap what is being decided).
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.exports.base import Chunk, Chunker

#: Types where sources add up (overlaps double count), by Fieldwatch's metric.
CUMULATIVE = ("steps", "distance", "sleep_duration")
_MODEL = re.compile(r"\bmodel:\s*([A-Za-z]+)")
WATCH, PHONE, OTHER = 0, 1, 2


def rank(source: str | None, device: str | None) -> int:
    """Apple's default priority of a source (lower counts first)."""
    found = _MODEL.search(device or "")
    model = found.group(1).lower() if found else ""
    name = (source or "").lower()
    if model == "watch" or (not model and "watch" in name):
        return WATCH
    if model == "iphone" or (not model and "iphone" in name):
        return PHONE
    return OTHER


@dataclass(order=True)
class _Record:
    start: float
    end: float
    key: tuple[int, str] = field(compare=False)  # (rank, source): lower counts first
    value: float = field(compare=False)
    offset_s: int = field(compare=False)
    source: str = field(compare=False)
    seq: int = field(compare=False)


def _uncovered(rec: _Record, higher: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of ``rec``'s time that none of ``higher`` (clipped to it) covers."""
    parts, at = [], rec.start
    for lo, hi in sorted(higher):
        if lo > at:
            parts.append((at, lo))
        at = max(at, hi)
        if at >= rec.end:
            break
    if at < rec.end:
        parts.append((at, rec.end))
    return parts


class Resolver:
    """Collects the cumulative records of an export, then gives them out resolved."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=".overlap-", suffix=".db", dir=directory)
        os.close(fd)
        self.path = Path(name)
        # Read in worker threads one step at a time (never at once): any thread may use it.
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE r (metric TEXT, start REAL, end_ REAL, value REAL, "
                        "rank INTEGER, source TEXT, offset_s INTEGER)")  # fmt: skip
        self.pending: list[tuple[object, ...]] = []
        self.count = 0

    def add(self, metric: str, start: datetime, end: datetime, value: float, source: str | None,
            rank: int) -> None:  # fmt: skip
        """A record of ``source``, ranked ``rank`` (lower counts first)."""
        offset = start.utcoffset() or timedelta()
        self.pending.append((metric, start.timestamp(), max(end, start).timestamp(), value,
                             rank, source or "", int(offset.total_seconds())))  # fmt: skip
        if len(self.pending) >= 5000:
            self._flush()

    def _flush(self) -> None:
        self.db.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?, ?)", self.pending)
        self.count += len(self.pending)
        self.pending.clear()

    def resolved(self) -> Iterator[tuple[str, str | None, Sample]]:
        """(metric, source, sample) of what counts, metric by metric in time order of
        decision."""
        self._flush()
        self.db.execute("CREATE INDEX r_order ON r (metric, start, end_)")
        metrics = [m for (m,) in self.db.execute("SELECT DISTINCT metric FROM r ORDER BY 1")]
        for metric in metrics:
            rows = self.db.execute("SELECT start, end_, value, rank, source, offset_s FROM r "
                                   "WHERE metric = ? ORDER BY start, end_", (metric,))  # fmt: skip
            for rec, ts, value in _sweep(rows):
                zone = timezone(timedelta(seconds=rec.offset_s))
                when = datetime.fromtimestamp(ts, UTC).astimezone(zone)
                yield metric, rec.source or None, Sample(when, value)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        self.path.unlink(missing_ok=True)


def _sweep(rows: Iterator[tuple[float, float, float, int, str, int]]
           ) -> Iterator[tuple[_Record, float, float]]:  # fmt: skip
    """Decide each record once every record that can overlap it has been seen (those
    starting before it ends): (record, where its counted part starts, its value)."""
    pending: list[tuple[float, int, _Record]] = []  # by end: not decided yet
    starts: list[tuple[float, int]] = []  # by start, of the pending (lazily pruned)
    decided: set[int] = set()
    window: list[_Record] = []  # every record that may still overlap a pending one

    def decide(rec: _Record) -> tuple[_Record, float, float] | None:
        higher = [(max(o.start, rec.start), min(o.end, rec.end)) for o in window
                  if o.key < rec.key and o.source != rec.source
                  and o.start < rec.end and o.end > rec.start]  # fmt: skip
        if rec.end == rec.start:  # an instant: counted unless a higher source covers it
            covered = any(o.key < rec.key and o.source != rec.source
                          and o.start <= rec.start < o.end for o in window)  # fmt: skip
            return None if covered else (rec, rec.start, rec.value)
        parts = _uncovered(rec, [h for h in higher if h[1] > h[0]])
        left = sum(hi - lo for lo, hi in parts)
        if not parts or left <= 0:
            return None
        value = round(rec.value * left / (rec.end - rec.start), 4)
        return (rec, parts[0][0], value) if value > 0 else None

    def settle(until: float | None) -> Iterator[tuple[_Record, float, float]]:
        while pending and (until is None or pending[0][0] <= until):
            _, _, rec = heapq.heappop(pending)
            decided.add(rec.seq)
            got = decide(rec)
            if got is not None:
                yield got
        while starts and starts[0][1] in decided:
            heapq.heappop(starts)
        low = starts[0][0] if starts else None
        if low is None:
            window.clear()
        else:
            window[:] = [r for r in window if r.end > low or r.seq not in decided]

    for seq, (start, end, value, rk, source, offset_s) in enumerate(rows):
        yield from settle(start)
        rec = _Record(start, end, (rk, source), value, offset_s, source, seq)
        heapq.heappush(pending, (end, rec.seq, rec))
        heapq.heappush(starts, (start, rec.seq))
        window.append(rec)
    yield from settle(None)


def resolved_chunks(
    directory: Path, records: Callable[[Chunker, Resolver], Iterator[Chunk]]
) -> Generator[Chunk]:
    """An export's chunks: what ``records`` yields as it reads (handing overlapping
    samples to the resolver), then the overlapping samples resolved, in chunks too."""
    chunker = Chunker()
    resolver = Resolver(directory)
    try:
        yield from records(chunker, resolver)
        yield from chunker.rest()
        for metric, source, sample in resolver.resolved():
            chunk = chunker.add(metric, source, sample)
            if chunk is not None:
                yield chunk
        yield from chunker.rest()
    finally:
        resolver.close()
