"""What each part of the connected-devices benchmark is given, and where its figures go."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from harness.database import ScratchDatabase
from harness.fleet import Fleet
from harness.results import Figure, say


@dataclass
class Bench:
    """The scratch database, the server's environment, the fleet and the options; the
    lines printed and kept for the results file, the summary figures and the JSON
    report."""

    db: ScratchDatabase
    env: dict[str, str]
    fleet: Fleet
    args: argparse.Namespace
    lines: list[str]
    figures: list[Figure] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        say(self.lines, text)
