"""What the commands print: plain tables for people, JSON for scripts, progress on
stderr for long work."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import typer

#: An export or import at least this large shows progress even when stderr is not a
#: terminal (a log file then shows that it is moving).
LARGE = 10_000


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, as wide as their widest cell; empty cells as ``-``."""
    cells = [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


class Progress:
    """``done/total noun`` on stderr: rewritten in place on a terminal, one line per
    step otherwise; silent for small work that is not on a terminal."""

    def __init__(self, noun: str, total: int) -> None:
        self.noun = noun
        self.total = total
        self.tty = sys.stderr.isatty()
        self.enabled = self.tty or total >= LARGE
        self._shown = False

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        line = f"  {done}/{self.total} {self.noun}"
        if self.tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
            self._shown = True
        else:
            typer.echo(line, err=True)

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            self._shown = False
