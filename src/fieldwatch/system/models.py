"""The periodic jobs' claims: one row per job, the newest tick some process ran."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.db.base import Base


class PeriodicJob(Base):
    """A periodic job of the installation (``system.jobs``). A process runs a tick only
    after moving ``tick_ms`` forward to it, which one process wins."""

    __tablename__ = "periodic_jobs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: The newest tick claimed: its start on the wall clock's grid of the job's interval,
    #: in milliseconds since the epoch.
    tick_ms: Mapped[int] = mapped_column(BigInteger)
    #: Ticks claimed since the row was made (over every process).
    runs: Mapped[int] = mapped_column(BigInteger)
    #: The process that claimed the newest tick (host:pid:random).
    owner: Mapped[str] = mapped_column(String(200))
    claimed_at: Mapped[datetime]
