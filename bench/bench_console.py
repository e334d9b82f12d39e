"""Console benchmarks: how fast the web console's pages answer.

Parts (``--part``):

* ``inventory``: the inventory page with ``--devices`` devices (100,000 by default),
  filtered, sorted and paged through representative URLs, as the whole page and as the
  table htmx swaps in; median and p95 of each over ``--requests`` requests (at least
  200), and of all of them against the target p95 <= 100 ms. On PostgreSQL (a scratch
  database next to FIELDWATCH_BENCH_DATABASE_URL, default
  postgresql://postgres@127.0.0.1:5432/test) and on SQLite (a file in a temporary
  directory); see bench/console_inventory.py.

Usage:  .venv/bin/python bench/bench_console.py --part inventory
        [--database postgresql sqlite] [--devices 100000] [--requests 200]
Results: bench/results/console-inventory-<database>.txt
"""

from __future__ import annotations

import argparse

from console_inventory import part_inventory

PARTS = {"inventory": part_inventory}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--part", choices=sorted(PARTS), default="inventory")
    parser.add_argument(
        "--database", nargs="+", choices=["postgresql", "sqlite"], default=["postgresql", "sqlite"]
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="per view (at least 200)")
    args = parser.parse_args()
    if args.requests < 200:
        parser.error("--requests: at least 200 per view")
    print("Fieldwatch console benchmark: the figures print as they are measured.", flush=True)
    PARTS[args.part](args)


if __name__ == "__main__":
    main()
