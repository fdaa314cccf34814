"""The dashboard's pages in a real browser: headless Chromium against the live server, on the
reference export committed through the collect path as fifteen passes a minute apart (the
last one now), the newer ten without one host, whose GPUs are therefore stale.

Chromium signs in through the admin's login form, opens the fleet, colours it by each
metric, follows a tile to its GPU page, picks a custom range there, and opens the pipeline
page. No request may leave 127.0.0.1 (the browser's requests are routed through the test and
any other is refused), no page may log an error, and no answer may be an error. Screenshots
at 1280 and 390 px wide are kept under ``test-artifacts/dashboard/``.

Two smaller scenes follow on a GPU with two MIG instances: the instances beside their GPU and
the links between their pages, and the fleet page's refresh, which stops while the page is
hidden.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from ingest.models import StreamSource
from tests.support.dashboard import ADMIN_PASSWORD, commit_pass, dashboard_browser, log_in
from tests.support.reference import REFERENCE_COLUMNS, REFERENCE_CSV, REFERENCE_UUID, REPO

pytestmark = [
    pytest.mark.integration,
    # WhiteNoise looks for STATIC_ROOT, which only collectstatic fills; the live server
    # serves static files from the apps' own folders instead, as runserver does.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

ARTIFACTS = REPO / "test-artifacts" / "dashboard"
PASSES = 15
PASSES_WITHOUT_STALE_HOST = 10
STALE_HOST = "mtv5-dgx1-hgpu-017"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
# dashboard.css: the viridis stops of the ten bins, and what a stale tile shows.
VIRIDIS = [
    "#440154", "#482878", "#3e4989", "#31688e", "#26828e",
    "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725",
]  # fmt: skip
FB_USED, FB_FREE = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"
# The page's colour choices: option value, label, metrics read, fixed domain (None: the
# range of the values on show, widened to whole numbers).
CHOICES = [
    ("utilisation", "Utilisation", ["DCGM_FI_DEV_GPU_UTIL"], (0, 100)),
    ("temperature", "Temperature", ["DCGM_FI_DEV_GPU_TEMP"], None),
    ("power", "Power", ["DCGM_FI_DEV_POWER_USAGE"], None),
    ("framebuffer", "Framebuffer used", [FB_USED, FB_FREE], (0, 100)),
    ("sm-clock", "SM clock", ["DCGM_FI_DEV_SM_CLOCK"], None),
]
FLEET_METRICS = sorted({metric for _, _, metrics, _ in CHOICES for metric in metrics})


def rgb(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def shown(value: float) -> str:
    """A number as the page writes it (en-US, at most one decimal, halves away from zero)."""
    rounded = Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{rounded.normalize():,f}"


def choice_value(metrics: list[str], values: dict[str, Any]) -> float | None:
    """A device's value for a colour choice, from its latest values as the API gives them."""
    samples = [values.get(metric) for metric in metrics]
    numbers: list[float] = [sample["value"] for sample in samples if sample is not None]
    if len(numbers) < len(metrics):
        return None
    if metrics == [FB_USED, FB_FREE]:
        used, free = numbers
        return None if used + free <= 0 else 100 * used / (used + free)
    return numbers[0]


def expected_bin(value: float, domain: tuple[float, float]) -> int:
    low, high = domain
    return min(9, max(0, math.floor((value - low) / (high - low) * 10)))


def hosts_and_gpus_of(path: Path) -> tuple[set[str], set[str]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return {row["Hostname"] for row in rows}, {row["uuid"] for row in rows}


def without_host(path: Path, hostname: str, out: Path) -> Path:
    lines = path.read_text().splitlines(keepends=True)
    out.write_text("".join([lines[0], *(line for line in lines[1:] if hostname not in line)]))
    return out


def load_passes(tmp_path: Path, now: datetime) -> tuple[StreamSource, list[datetime]]:
    """The sample source, as ``make run`` registers it, and its passes, committed with their
    stamps a minute apart up to ``now``; returns the stamps, oldest first."""
    call_command("add_source", "sample", str(REFERENCE_CSV), "--loop", "--batch-size", "100")
    source = StreamSource.objects.get(name="sample")
    fewer = without_host(REFERENCE_CSV, STALE_HOST, tmp_path / "without-one-host.csv")
    stamps = [now - timedelta(minutes=PASSES - 1 - index) for index in range(PASSES)]
    for index, stamp in enumerate(stamps):
        path = REFERENCE_CSV if index < PASSES - PASSES_WITHOUT_STALE_HOST else fewer
        commit_pass(path, source_id=source.pk, pass_number=index + 1, stamp=stamp)
    return source, stamps


def screenshots(page: Page, name: str) -> list[Path]:
    """The page at each width, whole; the paths written."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    written = []
    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(200)  # charts follow the window's resize event
        path = ARTIFACTS / f"{name}-{width_name}.png"
        page.screenshot(path=path, full_page=True)
        written.append(path)
    page.set_viewport_size({"width": 1280, "height": 900})
    return written


def api(context: BrowserContext, url: str) -> Any:
    """An API answer through the browser's own session, as the pages ask for it."""
    response = context.request.get(url)
    assert response.ok, f"{url}: {response.status} {response.text()}"
    return response.json()


def check_fleet(
    page: Page, context: BrowserContext, server: str, hosts: set[str], gpus: set[str]
) -> None:
    page.goto(f"{server}/dashboard/")
    tiles = page.locator("#fleet-hosts a.tile")
    expect(tiles).to_have_count(len(gpus))
    expect(page.locator("#fleet-hosts .host")).to_have_count(len(hosts))
    query = "&".join(f"metric={metric}" for metric in FLEET_METRICS)
    fleet = api(context, f"{server}/api/v1/fleet/latest?{query}")
    assert {device["id"] for device in fleet["devices"]} == gpus
    for name in ("devices", "hosts", "hot", "idle", "stale"):
        expect(page.locator(f'#fleet-summary [data-count="{name}"]')).to_have_text(
            str(fleet["counts"][name])
        )
    stale = [device for device in fleet["devices"] if device["stale"]]
    assert {device["hostname"] for device in stale} == {STALE_HOST}
    expect(page.locator("#fleet-hosts a.tile.stale")).to_have_count(len(stale))
    first_stale = page.locator(f'a.tile[data-device="{stale[0]["id"]}"]')
    expect(first_stale).to_have_attribute("title", re.compile(r"stale: last seen \d{4}-"))
    expect(first_stale).to_have_css("background-image", re.compile("repeating-linear-gradient"))
    # Each tile is a link to its GPU's page.
    expect(page.locator(f'a.tile[data-device="{REFERENCE_UUID}"]')).to_have_attribute(
        "href", f"/dashboard/gpus/{REFERENCE_UUID}/"
    )
    live = [device for device in fleet["devices"] if not device["stale"]]
    for key, label, metrics, fixed_domain in CHOICES:
        page.select_option("#colour-metric", key)
        expect(page).to_have_url(re.compile(rf"colour={key}"))
        values = {device["id"]: choice_value(metrics, device["values"]) for device in live}
        present = [value for value in values.values() if value is not None]
        low, high = math.floor(min(present)), math.ceil(max(present))
        domain = fixed_domain or (low, high if high > low else low + 1)
        # The lowest and highest devices, and a few between, by their value.
        ranked = sorted((value, device) for device, value in values.items() if value is not None)
        for value, device in [ranked[0], ranked[len(ranked) // 3], ranked[-1], *ranked[1::60]]:
            tile = page.locator(f'a.tile[data-device="{device}"]')
            expect(tile).to_have_attribute("data-value", re.compile(r"^[-0-9.e]+$"))
            assert float(tile.get_attribute("data-value") or "nan") == pytest.approx(value)
            title = re.compile(rf"{label}: {re.escape(shown(value))}\b")
            expect(tile).to_have_attribute("title", title)
            colour = rgb(VIRIDIS[expected_bin(value, domain)])
            expect(tile).to_have_css("background-color", colour)
        expect(page.locator("#fleet-legend .swatch.scale-0")).to_have_count(1)


def check_filters(page: Page, server: str, hosts: set[str]) -> None:
    host = sorted(hosts)[1]
    page.fill('input[name="hostname"]', host)
    page.click("#fleet-filters button[type=submit]")
    expect(page).to_have_url(re.compile(rf"hostname={host}"))
    expect(page.locator("#fleet-hosts .host")).to_have_count(1)
    expect(page.locator("#fleet-hosts .host-name a")).to_have_text(host)


def check_gpu_page(
    page: Page, context: BrowserContext, server: str, stamps: list[datetime]
) -> None:
    page.goto(f"{server}/dashboard/")
    page.locator(f'a.tile[data-device="{REFERENCE_UUID}"]').click()
    expect(page).to_have_url(f"{server}/dashboard/gpus/{REFERENCE_UUID}/")
    expect(page.locator("#gpu-page")).to_have_attribute("data-drawn", "true")
    latest = api(context, f"{server}/api/v1/gpus/{REFERENCE_UUID}/latest")
    metrics = [entry["metric"] for entry in latest]
    assert len(metrics) == 10
    cards = page.locator(".chart-card")
    expect(cards).to_have_count(len(metrics))
    # The default hour ends at the newest sample: every pass is in it, one bucket each. An
    # hour would take 15 s buckets for 240 points, but the passes are a minute apart, so the
    # buckets are a minute wide: narrower ones would be mostly empty.
    for metric in metrics:
        card = page.locator(f'.chart-card[data-metric="{metric}"]')
        expect(card.locator("canvas").first).to_be_visible()
        expect(card.locator(".chart-points")).to_have_attribute("data-points", str(PASSES))
        expect(card.locator(".chart-points")).to_have_text(f"{PASSES} buckets of 60 s")

    # A custom range: the third to the twelfth pass.
    start, end = stamps[2], stamps[11]
    chosen = f"start={start:%Y-%m-%dT%H:%M:%SZ}&end={end:%Y-%m-%dT%H:%M:%SZ}"
    page.goto(f"{server}/dashboard/gpus/{REFERENCE_UUID}/?{chosen}")
    expect(page.locator("#gpu-page")).to_have_attribute("data-drawn", "true")
    csv_link = page.locator("#gpu-csv")
    href = csv_link.get_attribute("href") or ""
    assert urlsplit(href).path == f"/api/v1/gpus/{REFERENCE_UUID}/telemetry.csv"
    assert parse_qs(urlsplit(href).query) == {
        "start_time": [f"{start:%Y-%m-%dT%H:%M:%SZ}"],
        "end_time": [f"{end:%Y-%m-%dT%H:%M:%SZ}"],
    }
    aggregate = api(
        context,
        f"{server}/api/v1/gpus/{REFERENCE_UUID}/telemetry/aggregate?bucket=60s"
        f"&start_time={start:%Y-%m-%dT%H:%M:%SZ}&end_time={end:%Y-%m-%dT%H:%M:%SZ}",
    )
    for metric in metrics:
        points = sum(1 for bucket in aggregate["buckets"] if bucket["metric"] == metric)
        assert points == 10
        card = page.locator(f'.chart-card[data-metric="{metric}"]')
        expect(card.locator(".chart-points")).to_have_attribute("data-points", str(points))


def check_pipeline(page: Page, context: BrowserContext, server: str, source: StreamSource) -> None:
    page.goto(f"{server}/dashboard/pipeline/")
    sources = api(context, f"{server}/api/v1/sources")
    sample = next(entry for entry in sources["sources"] if entry["name"] == source.name)
    assert sample["rows_per_second"] > 0
    row = page.locator(f'#pipeline-sources tr[data-source="{source.name}"]')
    expect(row).to_be_visible()
    expect(row.locator(".source-rate")).to_have_text(shown(sample["rows_per_second"]))
    expect(row.locator("a").first).to_have_attribute("href", sample["admin_url"])


def test_dashboard_pages_in_a_browser(
    transactional_db: None,
    live_server: LiveServer,
    django_user_model: type[User],
    tmp_path: Path,
) -> None:
    # transactional_db: the live server's thread reads what this test commits.
    now = datetime.now(UTC).replace(microsecond=0)
    source, stamps = load_passes(tmp_path, now)
    hosts, gpus = hosts_and_gpus_of(REFERENCE_CSV)
    assert (len(hosts), len(gpus)) == (31, 247)
    user = django_user_model.objects.create_superuser("operator", "", ADMIN_PASSWORD)
    server = live_server.url
    written: list[Path] = []

    with dashboard_browser(tmp_path / "chromium-profile", server) as (context, log):
        page = context.new_page()
        page.set_viewport_size({"width": 1280, "height": 900})
        log_in(page, server, user.username)
        check_fleet(page, context, server, hosts, gpus)
        page.select_option("#colour-metric", "utilisation")
        written += screenshots(page, "fleet")
        check_filters(page, server, hosts)
        check_gpu_page(page, context, server, stamps)
        page.goto(f"{server}/dashboard/gpus/{REFERENCE_UUID}/?range=1h")
        expect(page.locator("#gpu-page")).to_have_attribute("data-drawn", "true")
        written += screenshots(page, "gpu")
        check_pipeline(page, context, server, source)
        written += screenshots(page, "pipeline")
        page.goto(f"{server}/admin/")
        expect(page.locator("a.dashboard-link")).to_have_attribute("href", "/dashboard/")
        log.check()
    print("dashboard screenshots:", *map(str, written), sep="\n  ")


MIG_PARENT = "GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
MIG_PROFILES = {"1": "3g.40gb", "2": "4g.40gb"}


def write_mig_export(path: Path) -> Path:
    """One A100 and two of its MIG instances, each with a utilisation and a temperature."""
    header = [*REFERENCE_COLUMNS, "gpu_instance_id", "gpu_instance_profile"]
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(header)
    for metric, value in (("DCGM_FI_DEV_GPU_UTIL", "40"), ("DCGM_FI_DEV_GPU_TEMP", "51")):
        for instance, profile in (("", ""), *MIG_PROFILES.items()):
            fields = {
                "timestamp": "2025-07-18T20:42:34Z",
                "metric_name": metric,
                "gpu_id": "0",
                "device": "nvidia0",
                "uuid": MIG_PARENT,
                "modelName": "NVIDIA A100-SXM4-80GB",
                "Hostname": "mig-host-01",
                "value": value,
                "gpu_instance_id": instance,
                "gpu_instance_profile": profile,
            }
            writer.writerow([fields.get(column, "") for column in header])
    path.write_text(out.getvalue())
    return path


@pytest.fixture
def mig_fleet(transactional_db: None, live_server: LiveServer, tmp_path: Path) -> str:
    """The live server's address, with the MIG export committed, stamped now."""
    export = write_mig_export(tmp_path / "mig.csv")
    commit_pass(export, source_id=1, pass_number=1, stamp=datetime.now(UTC))
    return live_server.url


def test_mig_instances_sit_beside_their_gpu_and_link_both_ways(
    mig_fleet: str, tmp_path: Path
) -> None:
    server = mig_fleet
    instances = {f"{MIG_PARENT}:{number}": profile for number, profile in MIG_PROFILES.items()}

    with dashboard_browser(tmp_path / "chromium-profile", server) as (context, log):
        page = context.new_page()
        page.goto(f"{server}/dashboard/")
        group = page.locator(f'.gpu.has-mig[data-device="{MIG_PARENT}"]')
        expect(group.locator("a.tile")).to_have_count(1 + len(instances))
        expect(group.locator("a.tile.mig")).to_have_count(len(instances))
        for device, profile in instances.items():
            tile = group.locator(f'a.tile.mig[data-device="{device}"]')
            expect(tile.locator(".tile-name")).to_have_text(profile)
            expect(tile).to_have_attribute("href", f"/dashboard/gpus/{quote(device, safe='')}/")

        group.locator(f'a.tile[data-device="{MIG_PARENT}"]').click()
        expect(page.locator("#gpu-page")).to_have_attribute("data-drawn", "true")
        links = page.locator("#gpu-instance-list a")
        expect(links).to_have_count(len(instances))
        links.first.click()
        expect(page.locator("#gpu-page")).to_have_attribute("data-drawn", "true")
        expect(page.locator("#gpu-title")).to_contain_text(f"MIG {MIG_PROFILES['1']} #1")
        parent = page.get_by_role("link", name=MIG_PARENT, exact=True)
        expect(parent).to_have_attribute("href", f"/dashboard/gpus/{MIG_PARENT}/")
        expect(page.locator(".chart-card")).to_have_count(2)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.goto(f"{server}/dashboard/")
        group.screenshot(path=ARTIFACTS / "fleet-mig.png")
        log.check()


REFRESH_SECONDS = 5
SET_HIDDEN = """(hidden) => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_the_fleet_page_refreshes_while_shown_and_waits_while_hidden(
    mig_fleet: str, tmp_path: Path
) -> None:
    server = mig_fleet
    fleet_requests: list[str] = []

    def is_fleet(url: str) -> bool:
        return urlsplit(url).path == "/api/v1/fleet/latest"

    with dashboard_browser(tmp_path / "chromium-profile", server) as (context, log):
        page = context.new_page()
        page.on("request", lambda r: fleet_requests.append(r.url) if is_fleet(r.url) else None)
        page.goto(f"{server}/dashboard/?refresh={REFRESH_SECONDS}")
        expect(page.locator("#fleet-hosts a.tile")).to_have_count(1 + len(MIG_PROFILES))
        assert len(fleet_requests) == 1
        with page.expect_request(lambda request: is_fleet(request.url)):
            pass  # the next refresh, a period later
        page.evaluate(SET_HIDDEN, True)
        asked_while_shown = len(fleet_requests)
        page.wait_for_timeout(REFRESH_SECONDS * 1500)
        assert len(fleet_requests) == asked_while_shown, "the page refreshed while hidden"
        # Shown again: the page loads at once, not a period later.
        with page.expect_request(lambda request: is_fleet(request.url), timeout=1000):
            page.evaluate(SET_HIDDEN, False)
        log.check()


COUNTER = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"


def test_the_gpu_page_draws_a_counter_as_its_rate(
    transactional_db: None, live_server: LiveServer, tmp_path: Path
) -> None:
    # Twelve metrics, the energy counter among them, every 10 s for the last 200 s, kept at
    # the file's own times.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=200)
    spec = GeneratorSpec(hosts=1, gpus_per_host=1, metrics=12, timesteps=20, start=start)
    export = tmp_path / "energy.csv"
    with export.open("wb") as out:
        write_dcgm_csv(out, spec)
    commit_pass(export, source_id=1, pass_number=1, stamp=None)
    server = live_server.url

    with dashboard_browser(tmp_path / "chromium-profile", server) as (context, log):
        gpus = api(context, f"{server}/api/v1/gpus")["results"]
        device = gpus[0]["id"]
        kinds = {
            metric["name"]: metric["kind"] for metric in api(context, f"{server}/api/v1/metrics")
        }
        assert kinds[COUNTER] == "counter"
        page = context.new_page()
        aggregates = []
        page.on(
            "request",
            lambda r: (
                aggregates.append(parse_qs(urlsplit(r.url).query))
                if urlsplit(r.url).path.endswith("/telemetry/aggregate")
                else None
            ),
        )
        page.goto(f"{server}/dashboard/gpus/{device}/?range=15m")
        expect(page.locator("#gpu-page")).to_have_attribute("data-drawn", "true")
        # One request for the gauges, one with fn=rate for the counter alone.
        by_fn = {query.get("fn", [""])[0]: query for query in aggregates}
        assert sorted(by_fn) == ["", "rate"]
        assert by_fn["rate"]["metric"] == [COUNTER]
        assert COUNTER not in by_fn[""]["metric"]
        rate = by_fn["rate"]
        rates = api(
            context,
            f"{server}/api/v1/gpus/{device}/telemetry/aggregate?metric={COUNTER}&fn=rate"
            f"&bucket={rate['bucket'][0]}&start_time={rate['start_time'][0]}"
            f"&end_time={rate['end_time'][0]}",
        )
        assert any(bucket["rate"] for bucket in rates["buckets"])
        card = page.locator(f'.chart-card[data-metric="{COUNTER}"]')
        expect(card.locator("h2")).to_have_text(f"{COUNTER} (rate, mJ/s)")
        points = str(len(rates["buckets"]))
        expect(card.locator(".chart-points")).to_have_attribute("data-points", points)
        # 15 minutes in at most 300 buckets is 5 s each, but samples come every 10 s.
        assert rate["bucket"] == ["10s"]
        card.screenshot(path=ARTIFACTS / "gpu-counter-rate.png")
        log.check()
