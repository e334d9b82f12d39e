"""The figures: percentiles, printing them as they are measured, the summary table and
the files under bench/results/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (NaN for no values)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def say(lines: list[str], text: str) -> None:
    """Print a figure as it is measured, and keep it for the results file."""
    print(text, flush=True)
    lines.append(text)


@dataclass
class Figure:
    """A headline figure, against its target when it has one."""

    name: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""


def figure_table(figures: list[Figure]) -> list[str]:
    table = [f"{'figure':<40} {'measured':>14}  {'target':>10}  {'':<7} note"]
    for f in figures:
        value = "—" if f.value is None else f"{f.value:,.1f} {f.unit}"
        verdict = "" if f.met is None else ("met" if f.met else "NOT MET")
        table.append(f"{f.name:<40} {value:>14}  {f.target:>10}  {verdict:<7} {f.note}")
    return table


def write_results(name: str, lines: list[str]) -> Path:
    """bench/results/<name>.txt, one line each."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_json(name: str, data: Any) -> Path:
    """bench/results/<name>.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
