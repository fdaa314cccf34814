"""How long the fleet page takes to its first render at 2,000 GPUs, in headless Chromium
against the live server: the page marks the moment it has drawn its first answer
(``performance.mark("fleet-first-render")``), and the browser's resource timing tells the
API's share from the page's own (parse, build, lay out and paint the tiles).

A fleet of 250 hosts of 8 GPUs is generated and committed through the collect path, stamped
now. The page is loaded several times whole, and filtered to one GPU model, for the same
figures side by side. ``make bench-dashboard`` prints them (docs/measurements.md); the
default suite runs this too, checking that every tile is drawn, and asserts no time.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from tests.support.dashboard import commit_pass, dashboard_browser

# A measurement, not a check of behaviour: in make test-slow and make bench-dashboard.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

SPEC = GeneratorSpec(hosts=250, gpus_per_host=8, timesteps=1, workload_fraction=0.3)
RUNS = 5
FILTERED_MODEL = "NVIDIA L40S"
# Navigation start to the first drawn fleet, and the fleet request's own span, in ms.
TIMINGS = """() => {
  const rendered = performance.getEntriesByName("fleet-first-render")[0].startTime;
  const fleet = performance.getEntriesByType("resource")
    .find((entry) => entry.name.includes("/api/v1/fleet/latest"));
  return {
    first_render: rendered,
    api: fleet.responseEnd - fleet.requestStart,
    page: rendered - fleet.responseEnd,
  };
}"""


def measure(page: Page, url: str, devices: int) -> dict[str, float]:
    """Medians over RUNS loads of the page at ``url``, which must draw ``devices`` tiles."""
    runs: list[dict[str, Any]] = []
    for _ in range(RUNS):
        page.goto(url)
        page.wait_for_function("performance.getEntriesByName('fleet-first-render').length > 0")
        expect(page.locator("#fleet-hosts a.tile")).to_have_count(devices)
        runs.append(page.evaluate(TIMINGS))
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def test_fleet_page_first_render_at_2000_gpus(
    transactional_db: None, live_server: LiveServer, tmp_path: Path
) -> None:
    csv_path = tmp_path / "fleet.csv"
    with csv_path.open("wb") as out:
        write_dcgm_csv(out, SPEC)
    commit_pass(csv_path, source_id=1, pass_number=1, stamp=datetime.now(UTC))
    server = live_server.url

    with dashboard_browser(tmp_path / "chromium-profile", server) as (context, log):
        page = context.new_page()
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"{server}/dashboard/?model={FILTERED_MODEL}")
        subset = int(page.locator('#fleet-summary [data-count="devices"]').inner_text())
        assert 0 < subset < SPEC.gpu_count
        whole = measure(page, f"{server}/dashboard/", SPEC.gpu_count)
        filtered = measure(page, f"{server}/dashboard/?model={FILTERED_MODEL}", subset)
        log.check()

    for label, devices, figures in (
        ("whole", SPEC.gpu_count, whole),
        ("one model", subset, filtered),
    ):
        print(
            f"fleet page, {label}: devices={devices} median of {RUNS}: "
            + " ".join(f"{name}_ms={value:.0f}" for name, value in figures.items())
        )
    print(
        f"bench-dashboard: devices={SPEC.gpu_count} first_render_ms={whole['first_render']:.0f} "
        f"api_ms={whole['api']:.0f} page_ms={whole['page']:.0f} "
        f"subset_devices={subset} subset_first_render_ms={filtered['first_render']:.0f} "
        f"ratio={whole['first_render'] / filtered['first_render']:.2f}"
    )
