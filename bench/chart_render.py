"""Render time of the candidate charting libraries in headless Chromium. Figures and the
choice they led to in docs/charts.md.

    .venv/bin/python -m bench.chart_render [--points 50000] [--runs 7]   (or make bench-charts)

Each library's built file is fetched at a pinned version with ``npm pack`` (checked against
the registry's integrity string) into a temporary folder, beside a page per library that
loads it from ``file:`` URLs: nothing is fetched while the pages run. Cases: one series of
``--points`` points, four such series, and a mean line with a min-max band around it. Every
library gets the same plain arrays (``bench/chart_pages/series.js``) and shapes them into
its own format inside the timed part.

A run's time starts just before the library's ``<script>`` (so it includes parsing the
library) and stops one animation frame after the library says the chart is drawn: uPlot's
``draw`` hook, ECharts' ``finished`` event, Chart.js's ``afterRender`` plugin hook. Each case
runs ``--runs`` times per library after one discarded warm-up, libraries taking turns so a
shared machine's drift hits them alike, each run in a fresh page; medians are reported. A
run whose page logs an error, or whose library holds other than the expected number of
points, stops the benchmark.

Chromium is Debian's (``make browser``); Playwright drives it and never downloads one.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Final

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from bench.npm_release import fetch, read_member
from dashboard.vendored import UPLOT, NpmRelease

PAGES: Final = Path(__file__).resolve().parent / "chart_pages"
SHARED_SCRIPTS: Final = ("series.js", "report.js")
SCREENSHOTS: Final = Path(__file__).resolve().parent.parent / "var" / "bench-charts"
CHROMIUM: Final = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHART_WIDTH: Final = 1200
CHART_HEIGHT: Final = 400
RUN_TIMEOUT_MS: Final = 120_000


@dataclass(frozen=True)
class BuiltFile:
    """A file of a release's tarball that a page loads."""

    release: NpmRelease
    path: str

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class Candidate:
    key: str
    title: str
    scripts: tuple[BuiltFile, ...]
    stylesheets: tuple[BuiltFile, ...]
    draw_script: str

    @property
    def releases(self) -> str:
        return ", ".join(dict.fromkeys(f.release.spec for f in self.scripts))


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    series: int


ECHARTS: Final = NpmRelease(
    "echarts",
    "6.1.0",
    "sha512-q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIVpIyHZA==",
)
CHARTJS: Final = NpmRelease(
    "chart.js",
    "4.6.2",
    "sha512-xachB+pPHjp0syJi7llUBA1w3kMYl6NF3o7eVrvjnWCT+IB2zMaF2pX5UYDiwbbfsioFEIRnAjreNOMsGj5TIA==",
)
CHARTJS_DATE_ADAPTER: Final = NpmRelease(
    "chartjs-adapter-date-fns",
    "3.0.0",
    "sha512-Rs3iEB3Q5pJ973J93OBTpnP7qoGwvq3nUnoMdtxO+9aoJof7UFcRbWcIDteXuYd1fgAvct/32T9qaLyLuZVwCg==",
)

CANDIDATES: Final = (
    Candidate(
        "uplot",
        "uPlot",
        scripts=(BuiltFile(UPLOT.release, "dist/uPlot.iife.min.js"),),
        stylesheets=(BuiltFile(UPLOT.release, "dist/uPlot.min.css"),),
        draw_script="uplot.js",
    ),
    Candidate(
        "echarts",
        "Apache ECharts",
        # The "common" build: line charts, the time axis, tooltip, legend and data zoom,
        # without the full build's maps and rarer chart types.
        scripts=(BuiltFile(ECHARTS, "dist/echarts.common.min.js"),),
        stylesheets=(),
        draw_script="echarts.js",
    ),
    Candidate(
        "chartjs",
        "Chart.js",
        # Its time scale needs a date adapter; this bundle carries date-fns inside.
        scripts=(
            BuiltFile(CHARTJS, "dist/chart.umd.min.js"),
            BuiltFile(CHARTJS_DATE_ADAPTER, "dist/chartjs-adapter-date-fns.bundle.min.js"),
        ),
        stylesheets=(),
        draw_script="chartjs.js",
    ),
)
CASES: Final = (
    Case("line", "1 series", 1),
    Case("lines4", "4 series", 4),
    Case("band", "mean + min-max band", 3),
)


@dataclass(frozen=True)
class Run:
    load_ms: float
    draw_ms: float

    @property
    def total_ms(self) -> float:
        return self.load_ms + self.draw_ms


class BenchError(Exception):
    """A page failed, or a library did not hold the points it was given."""


def prepare(folder: Path) -> dict[str, tuple[int, int]]:
    """Fetch every candidate's files and write its page; bytes and gzip bytes by library."""
    sizes: dict[str, tuple[int, int]] = {}
    tarballs: dict[NpmRelease, Path] = {}
    for candidate in CANDIDATES:
        raw = compressed = 0
        for built in candidate.scripts + candidate.stylesheets:
            if built.release not in tarballs:
                tarballs[built.release] = fetch(built.release, folder / "tarballs")
            content = read_member(tarballs[built.release], built.path)
            (folder / built.name).write_bytes(content)
            raw += len(content)
            compressed += len(gzip.compress(content))
        sizes[candidate.key] = (raw, compressed)
        write_page(folder, candidate)
    for name in (*SHARED_SCRIPTS, *(c.draw_script for c in CANDIDATES)):
        shutil.copy(PAGES / name, folder / name)
    return sizes


def write_page(folder: Path, candidate: Candidate) -> None:
    page = Template((PAGES / "page.html").read_text()).substitute(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        stylesheets="\n".join(
            f'<link rel="stylesheet" href="{s.name}">' for s in candidate.stylesheets
        ),
        library_scripts="\n".join(f'<script src="{s.name}"></script>' for s in candidate.scripts),
        draw_script=candidate.draw_script,
    )
    (folder / f"{candidate.key}.html").write_text(page)


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = next((path for path in CHROMIUM if Path(path).is_file()), None)
    if executable is None:
        raise SystemExit("Debian's Chromium is not installed: run `make browser` (as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


def render(
    browser: Browser, page_file: Path, case: Case, points: int, screenshot: Path | None
) -> Run:
    """One run in a fresh page: load, draw, and check the page's errors and point count."""
    page: Page = browser.new_page(
        viewport={"width": CHART_WIDTH + 100, "height": CHART_HEIGHT + 200}
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: keep_errors(message, errors))
    try:
        page.goto(f"{page_file.as_uri()}?case={case.key}&points={points}")
        page.wait_for_function("window.benchResult || null", timeout=RUN_TIMEOUT_MS)
        result = page.evaluate("window.benchResult")
        if screenshot is not None:
            page.screenshot(path=screenshot)
    finally:
        page.close()
    if errors:
        raise BenchError(f"{page_file.name} {case.key}: {errors}")
    if result["points"] != case.series * points:
        raise BenchError(
            f"{page_file.name} {case.key}: the library holds {result['points']} points,"
            f" not {case.series * points}"
        )
    return Run(load_ms=result["load_ms"], draw_ms=result["draw_ms"])


def keep_errors(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(message.text)


def measure(
    browser: Browser, folder: Path, points: int, runs: int
) -> dict[tuple[str, str], list[Run]]:
    """Runs by (case, library): a warm-up each, then turns, the order rotating every round."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    measured: dict[tuple[str, str], list[Run]] = {}
    for case in CASES:
        for candidate in CANDIDATES:
            render(browser, folder / f"{candidate.key}.html", case, points, screenshot=None)
        for round_number in range(runs):
            shift = round_number % len(CANDIDATES)
            for candidate in CANDIDATES[shift:] + CANDIDATES[:shift]:
                last = round_number == runs - 1
                shot = SCREENSHOTS / f"{candidate.key}-{case.key}.png" if last else None
                run = render(browser, folder / f"{candidate.key}.html", case, points, shot)
                measured.setdefault((case.key, candidate.key), []).append(run)
    return measured


def median_total(runs: list[Run]) -> float:
    return statistics.median(run.total_ms for run in runs)


def report(
    measured: dict[tuple[str, str], list[Run]], sizes: dict[str, tuple[int, int]], points: int
) -> dict[str, float]:
    """Print the tables; return each library's median total for one series."""
    print(f"\nmedians of {len(next(iter(measured.values())))} runs, {points:,} points a series")
    print(f"{'case':<22}{'library':<16}{'load ms':>9}{'draw ms':>9}{'total ms':>10}{'vs best':>9}")
    for case in CASES:
        best = min(median_total(measured[case.key, c.key]) for c in CANDIDATES)
        for candidate in CANDIDATES:
            runs = measured[case.key, candidate.key]
            load = statistics.median(run.load_ms for run in runs)
            draw = statistics.median(run.draw_ms for run in runs)
            total = median_total(runs)
            print(
                f"{case.title:<22}{candidate.title:<16}{load:>9.1f}{draw:>9.1f}"
                f"{total:>10.1f}{total / best:>8.2f}x"
            )
    print(f"\n{'library':<16}{'releases':<60}{'bytes':>10}{'gzip':>9}")
    for candidate in CANDIDATES:
        raw, compressed = sizes[candidate.key]
        print(f"{candidate.title:<16}{candidate.releases:<60}{raw:>10,}{compressed:>9,}")
    print(f"screenshots of the last runs: {SCREENSHOTS}")
    return {c.key: median_total(measured["line", c.key]) for c in CANDIDATES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=50_000, help="points a series")
    parser.add_argument("--runs", type=int, default=7, help="measured runs per case and library")
    args = parser.parse_args()
    if args.points < 2 or args.runs < 1:
        parser.error("--points must be at least 2 and --runs at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-charts-") as tmp:
        folder = Path(tmp)
        sizes = prepare(folder)
        with chromium() as browser:
            try:
                measured = measure(browser, folder, args.points, args.runs)
            except BenchError as error:
                raise SystemExit(f"bench-charts: {error}") from None
    single = report(measured, sizes, args.points)
    # The choice is the fastest to draw one series, the case the summary line reports.
    chosen = min(single, key=lambda key: single[key])
    if chosen != UPLOT.release.name:
        print(f"note: the dashboard vendors {UPLOT.release.name}; this run favours {chosen}")
    figures = " ".join(f"{key}_ms={value:.1f}" for key, value in single.items())
    print(f"bench-charts: {figures} points={args.points} chosen={chosen}")


if __name__ == "__main__":
    main()
