"""What every export reader shares: the readings it yields (a metric, the app that
measured them, samples), its refusals, and where uploaded exports are kept.

An uploaded export is kept as ``<health exports dir>/<upload id>.<zip|xml|db>`` until a
run has read it whole (a failed run keeps it for its retry, which reads it again:
readings already stored are duplicates and dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fieldwatch.core.errors import ValidationFailed
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.connectors.base import Sample

#: Samples of one metric and source handed to ingestion at once.
CHUNK = 5000
#: The upload's kinds of file, by their first bytes.
ZIP_MAGIC = b"PK\x03\x04"
SQLITE_MAGIC = b"SQLite format 3\x00"
SUFFIXES = ("zip", "xml", "db")


class InvalidExport(ValidationFailed):
    """The file is not a readable export of the integration (422)."""

    slug, title = "invalid-export", "Not a readable health export"


@dataclass(frozen=True, slots=True)
class Chunk:
    metric: str
    #: The app or device that measured (Apple's ``sourceName``, Health Connect's
    #: package name): the readings' provenance.
    source: str | None
    samples: list[Sample]


class Chunker:
    """Gathers samples per (metric, source) and gives them out ``CHUNK`` at a time."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str | None], list[Sample]] = {}

    def add(self, metric: str, source: str | None, sample: Sample) -> Chunk | None:
        samples = self.open.setdefault((metric, source), [])
        samples.append(sample)
        if len(samples) < CHUNK:
            return None
        del self.open[(metric, source)]
        return Chunk(metric, source, samples)

    def rest(self) -> list[Chunk]:
        out = [Chunk(m, s, samples) for (m, s), samples in self.open.items() if samples]
        self.open.clear()
        return out


def exports_dir(settings: Settings) -> Path:
    return settings.data_dir / "health-exports"


def kept_export(settings: Settings, upload_id: object) -> Path | None:
    """The kept file of upload ``upload_id`` (None: gone or never kept)."""
    for suffix in SUFFIXES:
        path = exports_dir(settings) / f"{upload_id}.{suffix}"
        if path.is_file():
            return path
    return None


def sniff(path: Path) -> str:
    """``zip``, ``db`` or ``xml`` from the file's first bytes."""
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(SQLITE_MAGIC):
        return "db"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "xml"
    raise InvalidExport("The file is not a zip, an XML file nor an SQLite database.")
