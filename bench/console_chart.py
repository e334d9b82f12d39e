"""The device page's 30-day chart in headless Chromium: the time from navigation start to
every chart of the page drawn.

Seeds one device with ``--days`` days of one reading a minute for three metrics (43,200
readings each for 30 days), through the API so that the real ingest path keeps the
rollups, and serves it with ``fieldwatch serve``. Then, ``--runs`` times, a fresh browser
context (cold cache, the session cookie only) opens ``/console/devices/{id}?range=30d``
and the figure is the page's ``fieldwatch:charts-drawn`` performance mark (milliseconds
since navigation start; ``charts.js`` sets it when every chart has drawn the points of
its first fetch). The series requests' durations come from Resource Timing.

Usage: bench/bench_console_chart.py [--db postgresql|sqlite|both] [--days 30] [--runs 15]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.sync_api import Browser, sync_playwright

from harness.database import PASSWORD, ScratchDatabase, env_for, set_up
from harness.results import Figure, figure_table, percentile, say, write_results
from harness.server import login, server
from harness.timing import timed_gets

CHROMIUM = "/usr/lib/chromium/chromium-headless-shell"
EMAIL = "bench@example.com"
METRICS = (("temperature", "°C", 20.0), ("humidity", "%", 50.0), ("battery_level", "%", 80.0))
CHUNK = 2000  # readings per upload
TARGET_MS = 1000.0


@contextlib.contextmanager
def database(kind: str) -> Iterator[dict[str, str]]:
    """The server's environment on a scratch PostgreSQL database or a fresh SQLite file."""
    if kind == "postgresql":
        with ScratchDatabase("fieldwatch_bench_chart") as db:
            yield env_for(db)
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    env |= {"FIELDWATCH_DATA_DIR": tempfile.mkdtemp(prefix="fieldwatch-bench-chart-"),
            "FIELDWATCH_LOG_LEVEL": "WARNING"}  # fmt: skip
    yield env


def seed(base: str, days: int) -> str:
    """A device with ``days`` days of one reading a minute per metric; its id."""
    token = login(base, EMAIL)
    headers = {"Authorization": f"Bearer {token}"}
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    minutes = days * 1440
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        r = http.post("/api/v1/devices", json={"name": "Chart bench", "type": "meter"})
        r.raise_for_status()
        device = str(r.json()["id"])
        for metric, unit, level in METRICS:
            for start in range(0, minutes, CHUNK):
                values = [
                    {"timestamp": (end - timedelta(minutes=minutes - i)).isoformat(),
                     "value": round(level + 5 * ((i % 1440) / 720 - 1) ** 2, 3), "unit": unit}
                    for i in range(start, min(minutes, start + CHUNK))
                ]  # fmt: skip
                r = http.post(f"/api/v1/devices/{device}/data",
                              json={"data_type": metric, "values": values})  # fmt: skip
                r.raise_for_status()
                assert r.json()["accepted"] == len(values), r.text
    total = minutes * len(METRICS)
    print(f"  seeded {total:,} readings ({len(METRICS)} metrics × {minutes:,}) through the API "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    return device


def session_cookies(browser: Browser, base: str) -> list[Any]:
    """Sign in through the login page once; the session cookie for the runs."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + "/console/login")
    page.get_by_label("E-mail").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/console/")
    cookies = context.cookies()
    context.close()
    return list(cookies)


MEASURE = """() => {
  const drawn = performance.getEntriesByName('fieldwatch:charts-drawn')[0];
  const series = performance.getEntriesByType('resource').filter(e => e.name.includes('/series?'));
  const charts = [...document.querySelectorAll('figure[data-metric]')];
  const nav = performance.getEntriesByType('navigation')[0];
  const fragment = performance.getEntriesByType('resource').find(e => e.name.endsWith('/charts'));
  return {drawn: drawn ? drawn.startTime : null,
          page: nav.responseEnd, ready: nav.domContentLoadedEventEnd,
          fragmentSent: fragment.startTime, fragmentDone: fragment.responseEnd,
          series: series.map(e => e.duration),
          firstSeriesStart: Math.min(...series.map(e => e.startTime)),
          points: charts.map(c => Number(c.dataset.points)),
          intervals: charts.map(c => c.dataset.interval)};
}"""


def series_alone(base: str, device: str, cookies: list[Any], runs: int) -> list[float]:
    """The page's series request (every chart's points) one at a time: what the server
    spends on it."""
    jar = {c["name"]: c["value"] for c in cookies}
    params = {"last": "30d", "tz": "UTC", "points": "1000"}
    with httpx.Client(base_url=base, cookies=jar, timeout=60) as http:
        url = f"/console/devices/{device}/series"
        return timed_gets(http, [url] * (runs + 1), params)[1:]


def measure(
    browser: Browser, base: str, device: str, runs: int
) -> tuple[list[dict[str, Any]], list[float]]:
    cookies = session_cookies(browser, base)
    url = f"{base}/console/devices/{device}?range=30d"
    results = []
    for _ in range(runs + 1):  # the first run warms the server up and is not counted
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies(cookies)  # type: ignore[arg-type]
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("[data-charts][data-drawn]", timeout=30_000)
        results.append(page.evaluate(MEASURE))
        context.close()
    return results[1:], series_alone(base, device, cookies, runs)


def stats(values: list[float]) -> str:
    return (f"median {statistics.median(values):7.1f} ms   p95 {percentile(values, 95):7.1f} ms"
            f"   max {max(values):7.1f} ms")  # fmt: skip


def report(
    lines: list[str], kind: str, days: int, results: list[dict[str, Any]], alone: list[float]
) -> Figure:
    drawn = [r["drawn"] for r in results]
    first = results[0]
    say(lines, f"{kind}: {len(first['points'])} charts, points per chart {first['points']}, "
               f"interval {first['intervals']}, {len(drawn)} runs")  # fmt: skip
    rows = (
        (f"navigation → all charts drawn ({days} days)", drawn),
        ("navigation → the page's HTML received", [r["page"] for r in results]),
        ("navigation → DOMContentLoaded", [r["ready"] for r in results]),
        ("navigation → the section's request sent", [r["fragmentSent"] for r in results]),
        ("navigation → the section received", [r["fragmentDone"] for r in results]),
        ("navigation → the series request sent", [r["firstSeriesStart"] for r in results]),
        ("the series request (all charts, in the page)", [d for r in results for d in r["series"]]),
        ("the series request alone (sequential)", alone),
    )
    for name, values in rows:
        say(lines, f"{kind}: {name:<46} {stats(values)}")
    p95 = percentile(drawn, 95)
    return Figure(f"{days}-day chart drawn, p95 ({kind})", p95, "ms", f"≤ {TARGET_MS:.0f} ms",
                  p95 <= TARGET_MS)  # fmt: skip


def run(kind: str, days: int, runs: int, lines: list[str]) -> Figure:
    print(f"{kind}: setting up", flush=True)
    with database(kind) as env:
        set_up(env, EMAIL, "bench")
        with server(env) as base:
            device = seed(base, days)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM)
                try:
                    results, alone = measure(browser, base, device, runs)
                finally:
                    browser.close()
    return report(lines, kind, days, results, alone)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    kinds = ["postgresql", "sqlite"] if args.db == "both" else [args.db]
    lines = [f"The device page's {args.days}-day chart: {len(METRICS)} metrics at one reading "
             f"a minute; headless Chromium, a fresh context per run, {args.runs} runs"]  # fmt: skip
    print(lines[0], flush=True)
    figures = [run(kind, args.days, args.runs, lines) for kind in kinds]
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    say(lines, f"load average at the end (1/5/15 min): {load} on {os.cpu_count()} CPUs")
    for line in figure_table(figures):
        say(lines, line)
    write_results("console_chart", lines)


if __name__ == "__main__":
    main()
