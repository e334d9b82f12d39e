"""The device page's 30-day chart in headless Chromium (``console_chart``): time from
navigation start to the charts drawn, median and p95.

Usage: .venv/bin/python bench/bench_console_chart.py [--db postgresql|sqlite|both]
       [--days 30] [--runs 15]
"""

from __future__ import annotations

from console_chart import main

if __name__ == "__main__":
    main()
