"""The dashboard's aggregate chart module in a real browser: headless Chromium draws an
aggregate body the API returned with the vendored uPlot, both served by Django's static files
handler (as ``make run`` serves them).

The body (``tests/fixtures/aggregate_utilisation_power_gap.json``, made as
``tests/fixtures/README.md`` says) holds two metrics of one GPU in one-minute buckets, with
twenty minutes missing in the middle. The page is ``tests/pages/aggregate-chart.html``, handed
to the browser by Playwright under the server's origin. Screenshots are kept under
``test-artifacts/charts/``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from string import Template
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.handlers.wsgi import WSGIHandler
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect

from tests.support.browser import headless_chromium
from tests.support.reference import REPO

pytestmark = pytest.mark.integration

AGGREGATE = json.loads((REPO / "tests/fixtures/aggregate_utilisation_power_gap.json").read_text())
PAGE = Template((REPO / "tests/pages/aggregate-chart.html").read_text())
ARTIFACTS = REPO / "test-artifacts" / "charts"
UTILISATION = "DCGM_FI_DEV_GPU_UTIL"
POWER = "DCGM_FI_DEV_POWER_USAGE"
# +09:30 in July: a zone whose times differ from UTC's by hours and minutes.
BROWSER_ZONE = "Australia/Adelaide"
LOCALE = "en-US"
MEAN_COLOUR = [0, 114, 178]  # the module's mean line, in RGB
# The module's series indices in uPlot's data.
MEAN, MAX, MIN = 1, 2, 3


class QuietRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The test reports failures itself; no line per request."""


@pytest.fixture(scope="module")
def static_server() -> Iterator[str]:
    """Django's static files handler, as runserver and the live server use, on a free port."""
    server = make_server(
        "127.0.0.1",
        0,
        StaticFilesHandler(WSGIHandler()),
        server_class=WSGIServer,
        handler_class=QuietRequestHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class PageLog:
    """The page's console errors, uncaught exceptions and failed requests; every request it
    made and every answer it got."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    responses: list[tuple[int, str]] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("requestfailed", lambda r: self.errors.append(f"{r.url}: {r.failure}"))
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("response", lambda response: self.responses.append((response.status, response.url)))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with headless_chromium(profile, timezone_id=BROWSER_ZONE, locale=LOCALE) as context:
        yield context


@pytest.fixture
def chart_page(browser: BrowserContext, static_server: str) -> Iterator[tuple[Page, PageLog]]:
    """The test page, loaded with uPlot and the module; its log is checked after the test."""
    page = browser.new_page()
    log = PageLog()
    log.watch(page)
    url = f"{static_server}/aggregate-chart-test"
    body = PAGE.substitute(static="/" + settings.STATIC_URL.lstrip("/"))
    page.route(url, lambda route: route.fulfill(body=body, content_type="text/html"))
    page.goto(url)
    page.wait_for_function("window.chartTest !== undefined")
    yield page, log
    page.close()
    assert not log.errors, f"the page logged errors: {log.errors}"
    failed = [(status, url) for status, url in log.responses if status >= 400]
    assert not failed, f"requests that failed: {failed}"
    elsewhere = [url for url in log.requests if not url.startswith(static_server + "/")]
    assert not elsewhere, f"requests that left the test server: {elsewhere}"


def draw(page: Page, metric: str, chart_settings: dict[str, Any]) -> dict[str, Any]:
    """Draw one metric of the fixture with the module; uPlot's state once it has drawn."""
    page.evaluate("(args) => chartTest.draw(...args)", [AGGREGATE, metric, chart_settings])
    page.wait_for_function("window.plot.status === 1")
    state: dict[str, Any] = page.evaluate("chartTest.state()")
    return state


def x_position(page: Page, bucket_start: str) -> float:
    position: float = page.evaluate("(x) => plot.valToPos(x, 'x')", epoch(bucket_start))
    return position


def buckets_of(metric: str) -> list[dict[str, Any]]:
    return [bucket for bucket in AGGREGATE["buckets"] if bucket["metric"] == metric]


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def shown(value: float, unit: str) -> str:
    """A value as the legend shows it in en-US: at most two decimals, halves rounded up."""
    rounded = Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{rounded.normalize():,f} {unit}"


def hover(page: Page, bucket_start: str) -> None:
    page.evaluate("(x) => chartTest.hover(x)", epoch(bucket_start))


def legend_row(page: Page, label: str) -> Any:
    return page.locator(".u-legend .u-series", has=page.locator(".u-label", has_text=label))


def test_fixture_is_an_aggregate_body_as_the_api_documents_it() -> None:
    spec = yaml.safe_load((REPO / "openapi.yaml").read_text())
    schema = {"$ref": "#/components/schemas/Aggregate", "components": spec["components"]}
    jsonschema.validate(AGGREGATE, schema)
    assert {bucket["metric"] for bucket in AGGREGATE["buckets"]} == {UTILISATION, POWER}


def test_draws_each_bucket_as_a_mean_line_in_a_min_max_band(
    chart_page: tuple[Page, PageLog],
) -> None:
    page, _ = chart_page
    state = draw(page, UTILISATION, {"unit": "%"})
    buckets = buckets_of(UTILISATION)
    starts = [epoch(bucket["bucket_start"]) for bucket in buckets]
    # One row per bucket, and one of nulls where the 20-minute gap starts.
    gap_index = next(i for i in range(1, len(starts)) if starts[i] - starts[i - 1] > 60)
    gap_row = starts[gap_index - 1] + 60
    assert state["data"][0] == [*starts[:gap_index], gap_row, *starts[gap_index:]]
    for index, key in ((MEAN, "avg"), (MAX, "max"), (MIN, "min")):
        values = state["data"][index]
        assert values[gap_index] is None
        assert values[:gap_index] + values[gap_index + 1 :] == [b[key] for b in buckets]
    assert state["labels"] == [f"Time ({BROWSER_ZONE})", "mean", "max", "min"]
    assert state["bands"] == [[MAX, MIN]]
    assert state["xRange"] == [starts[0], starts[-1]]
    assert state["yLabel"] == "%"

    # uPlot drew the mean on both sides of the gap, and nothing across it.
    columns = page.evaluate("(colour) => chartTest.columnsWithColour(colour)", MEAN_COLOUR)
    before_gap = x_position(page, buckets[gap_index - 1]["bucket_start"])
    after_gap = x_position(page, buckets[gap_index]["bucket_start"])
    assert any(column < before_gap for column in columns)
    assert any(column > after_gap for column in columns)
    inside_gap = [column for column in columns if before_gap + 2 < column < after_gap - 2]
    assert not inside_gap, f"the mean line bridges the gap at columns {inside_gap}"

    bucket = buckets[10]
    hover(page, bucket["bucket_start"])
    expect(legend_row(page, "mean").locator(".u-value")).to_have_text(shown(bucket["avg"], "%"))
    expect(legend_row(page, "max").locator(".u-value")).to_have_text(shown(bucket["max"], "%"))
    expect(legend_row(page, "min").locator(".u-value")).to_have_text(shown(bucket["min"], "%"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#chart").screenshot(path=ARTIFACTS / "aggregate-utilisation.png")


def test_times_are_in_the_browser_zone_unless_utc_is_asked_for(
    chart_page: tuple[Page, PageLog],
) -> None:
    page, _ = chart_page
    bucket = buckets_of(POWER)[30]
    start = datetime.fromisoformat(bucket["bucket_start"])
    local = start.astimezone(ZoneInfo(BROWSER_ZONE))
    assert local.utcoffset() == timedelta(hours=9, minutes=30)

    draw(page, POWER, {"unit": "W"})
    hover(page, bucket["bucket_start"])
    time_row = page.locator(".u-legend .u-series").first
    expect(time_row.locator(".u-label")).to_have_text(f"Time ({BROWSER_ZONE})")
    expect(time_row.locator(".u-value")).to_have_text(local.strftime("%Y-%m-%d %H:%M:%S"))
    expect(legend_row(page, "mean").locator(".u-value")).to_have_text(shown(bucket["avg"], "W"))

    draw(page, POWER, {"unit": "W", "timeZone": "UTC"})
    hover(page, bucket["bucket_start"])
    expect(time_row.locator(".u-label")).to_have_text("Time (UTC)")
    utc = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    expect(time_row.locator(".u-value")).to_have_text(utc)
    page.locator("#chart").screenshot(path=ARTIFACTS / "aggregate-power-utc.png")


def test_a_metric_without_buckets_draws_empty_axes(chart_page: tuple[Page, PageLog]) -> None:
    page, _ = chart_page
    state = draw(page, "DCGM_FI_DEV_GPU_TEMP", {"unit": "°C"})
    assert state["data"] == [[], [], [], []]
    assert state["yLabel"] == "°C"


@pytest.mark.parametrize(
    ("change", "settings_", "message"),
    [
        ({"bucket": "1m"}, {}, 'aggregate.bucket must be whole seconds such as "60s", not "1m"'),
        ({"buckets": None}, {}, "aggregate.buckets must be the list of buckets"),
        (
            {"buckets": [{**AGGREGATE["buckets"][0], "bucket_start": "18/07/2025 10:00"}]},
            {},
            'bucket_start is not an RFC 3339 time: "18/07/2025 10:00"',
        ),
        ({}, {"timeZone": "Mars/Olympus_Mons"}, 'unknown time zone "Mars/Olympus_Mons"'),
    ],
)
def test_a_body_or_setting_it_cannot_read_is_refused_with_a_message_naming_it(
    chart_page: tuple[Page, PageLog],
    change: dict[str, Any],
    settings_: dict[str, Any],
    message: str,
) -> None:
    page, _ = chart_page
    body = {**AGGREGATE, **change}
    refusal = page.evaluate("(args) => chartTest.refusal(...args)", [body, UTILISATION, settings_])
    assert refusal is not None
    assert refusal.startswith(message)
