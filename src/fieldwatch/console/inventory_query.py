"""The inventory table's state as the URL holds it: filters, sort and page.

The same query string serves the page, its htmx fragment, the CSV export and the links
of the sortable headers and the pager, so that any view of the table is a bookmark.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fieldwatch.core.errors import ValidationFailed
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.repository import DeviceFilter
from fieldwatch.devices.schemas import clean_tags

PATH = "/console/inventory"
EXPORT_PATH = "/console/inventory/export"
#: The columns a header can sort by (the API's sorts) and their headings.
SORTABLE = {
    "name": "Name",
    "serial_number": "Serial number",
    "type": "Type",
    "status": "Status",
    "location": "Location",
}
SORTS = {*SORTABLE, "created_at", "updated_at"}
DEFAULT_SORT = "-created_at"
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_LIMIT = 50
CONNECTIVITY = ("online", "offline")
#: The longest filter values the API takes.
MAX_LENGTH = {"type": 100, "location": 200, "q": 100}


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"The inventory cannot be shown: {field} {message}.",
        errors=[{"field": field, "message": message}],
    )


def _tags(params: Any) -> tuple[str, ...]:
    """``tag=`` repeated, or tags separated by ``;`` in one field (as the filter form and
    the CSV write them)."""
    given = [t.strip() for value in params.getlist("tag") for t in value.split(";")]
    try:
        return tuple(clean_tags(list(dict.fromkeys(t for t in given if t))))
    except ValueError as exc:
        raise _invalid("tag", str(exc)) from None


def _group(params: Mapping[str, str]) -> uuid.UUID | None:
    raw = (params.get("group") or "").strip()
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        raise _invalid("group", "is not a group's id") from None


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise _invalid(name, "must be a whole number below 1,000,000,000")
    return int(raw)


@dataclass(frozen=True, slots=True)
class InventoryQuery:
    status: tuple[str, ...] = ()
    type: str | None = None
    location: str | None = None
    q: str | None = None
    connectivity: str | None = None
    tags: tuple[str, ...] = ()
    group: uuid.UUID | None = None
    sort: str = DEFAULT_SORT
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(cls, params: Any) -> InventoryQuery:
        """From the request's query parameters (a ``QueryParams``); empty fields (as a
        GET form sends them) mean no filter."""
        statuses = tuple(dict.fromkeys(s for s in params.getlist("status") if s))
        for s in statuses:
            if s not in DeviceStatus.__members__:
                raise _invalid("status", f"{s!r} is not a status")
        text = {}
        for name, longest in MAX_LENGTH.items():
            value = (params.get(name) or "").strip() or None
            if value is not None and len(value) > longest:
                raise _invalid(name, f"is longer than {longest} characters")
            text[name] = value
        connectivity = params.get("connectivity") or None
        if connectivity is not None and connectivity not in CONNECTIVITY:
            raise _invalid("connectivity", "must be online or offline")
        sort = params.get("sort") or DEFAULT_SORT
        if sort.lstrip("-") not in SORTS:
            raise _invalid("sort", f"cannot be {sort!r}")
        limit = min(max(_int(params, "limit", DEFAULT_LIMIT), 1), max(PAGE_SIZES))
        return cls(
            status=statuses, connectivity=connectivity, tags=_tags(params), group=_group(params),
            sort=sort, limit=limit, offset=_int(params, "offset", 0), **text,
        )  # fmt: skip

    def filter(self, group: Any = None) -> DeviceFilter:
        """The device list's filter; ``group``: the clause ``GroupService.scope`` gives for
        ``self.group``."""
        return DeviceFilter(
            status=list(self.status), type=self.type, location=self.location, q=self.q,
            connectivity=self.connectivity, tags=list(self.tags), group=group,
        )  # fmt: skip

    @property
    def filtered(self) -> bool:
        return bool(self.filter().clauses()) or self.group is not None

    @property
    def tags_text(self) -> str:
        """The tags as the filter form's field shows them."""
        return "; ".join(self.tags)

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        """The query string's pairs, defaults left out."""
        q = dataclasses.replace(self, **changes)
        pairs = [("status", s) for s in q.status]
        for name in ("type", "location", "q", "connectivity"):
            value = getattr(q, name)
            if value:
                pairs.append((name, value))
        pairs.extend(("tag", t) for t in q.tags)
        if q.group:
            pairs.append(("group", str(q.group)))
        if q.sort != DEFAULT_SORT:
            pairs.append(("sort", q.sort))
        if q.limit != DEFAULT_LIMIT:
            pairs.append(("limit", str(q.limit)))
        if q.offset:
            pairs.append(("offset", str(q.offset)))
        return pairs

    def url(self, path: str = PATH, **changes: Any) -> str:
        query = urlencode(self.params(**changes))
        return f"{path}?{query}" if query else path

    @property
    def export_url(self) -> str:
        return self.url(EXPORT_PATH, sort=DEFAULT_SORT, limit=DEFAULT_LIMIT, offset=0)

    # The sortable headers.
    def sort_url(self, column: str) -> str:
        """Sorted by ``column`` ascending, or descending when it is so already; from the
        first page."""
        return self.url(sort=f"-{column}" if self.sort == column else column, offset=0)

    def aria_sort(self, column: str) -> str | None:
        if self.sort == column:
            return "ascending"
        if self.sort == f"-{column}":
            return "descending"
        return None

    # The pager.
    def pages(self, total: int) -> Pager:
        return Pager(self, total)


@dataclass(frozen=True, slots=True)
class Pager:
    query: InventoryQuery
    total: int

    @property
    def first_row(self) -> int:
        return min(self.query.offset + 1, self.total) if self.total else 0

    def last_row(self, shown: int) -> int:
        return self.query.offset + shown

    @property
    def number(self) -> int:
        return self.query.offset // self.query.limit + 1

    @property
    def count(self) -> int:
        return max(1, -(-self.total // self.query.limit))

    def _at(self, offset: int) -> str:
        return self.query.url(offset=offset)

    def links(self) -> Sequence[tuple[str, str | None]]:
        """(label, URL or None where there is no such page) for first, previous, next,
        last."""
        q, last = self.query, (self.count - 1) * self.query.limit
        before = q.offset > 0
        after = q.offset + q.limit < self.total
        return [
            ("First", self._at(0) if before else None),
            ("Previous", self._at(max(0, q.offset - q.limit)) if before else None),
            ("Next", self._at(q.offset + q.limit) if after else None),
            ("Last", self._at(last) if after else None),
        ]
