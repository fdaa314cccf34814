"""The admin and the API docs in a real browser: headless Chromium against the live server.

The reference export is committed first, then Chromium logs into the admin, finds a GPU and
follows its samples link, and opens the Swagger UI page. Every request the pages make is
recorded: none may leave the machine, and no static asset may fail to load. Screenshots of
the pages are kept under ``test-artifacts/browser/``.

Needs Debian's Chromium (``make browser`` installs it); Playwright drives it and never
downloads a browser of its own.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import (
    BrowserContext,
    Page,
    Request,
    Response,
    expect,
)
from pytest_django.live_server_helper import LiveServer

from bench.direct_load import collect_file
from ingest.models import Gpu, Sample
from tests.support.browser import headless_chromium
from tests.support.reference import REFERENCE_CSV, REPO

pytestmark = [
    pytest.mark.integration,
    # WhiteNoise looks for STATIC_ROOT, which only collectstatic fills; the live server
    # serves static files from the apps' own folders instead, as runserver does.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

ARTIFACTS = REPO / "test-artifacts" / "browser"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Assets each page needs, under STATIC_URL: the admin's own, and the sidecar's Swagger UI.
REQUIRED_ASSETS = (
    "admin/css/base.css",
    "admin/css/changelists.css",
    "admin/js/filters.js",
    "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
    "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
    "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-standalone-preset.js",
)

KNOWN_GPU = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
DOCUMENTED_PATHS = ("/api/v1/gpus/{id}/telemetry", "/api/v1/stats")
LINES_PER_CHUNK = 500
ADMIN_HEADER_BG = "rgb(65, 118, 144)"  # the admin's --header-bg, set by its base.css
PASSWORD = "browser-test-password-7d1e"  # noqa: S105 (a throwaway user of the test database)


def load_reference_export() -> dict[str, list[str]]:
    """Commit the whole reference export, chunk by chunk of whole lines, as collectors do.

    Returns the metric names of each GPU's lines in the file, by GPU uuid.
    """
    for _, result in collect_file(REFERENCE_CSV, source_id=1, lines_per_chunk=LINES_PER_CHUNK):
        assert (result.outcome, result.rejected) == ("committed", 0), result
    raw = REFERENCE_CSV.read_bytes()
    metrics: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(raw.decode())):
        metrics.setdefault(row["uuid"], []).append(row["metric_name"])
    return metrics


@dataclass
class NetworkLog:
    """Every request the browser's pages made, and every answer or failure they got."""

    requests: list[Request] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # Stopped inside the browser by the page's Content-Security-Policy: never sent.
    blocked_by_policy: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.on("request", self.on_request)
        context.on("response", self.on_response)
        context.on("requestfailed", self.on_failure)

    def on_request(self, request: Request) -> None:
        self.requests.append(request)

    def on_response(self, response: Response) -> None:
        self.responses.append(response)

    def on_failure(self, request: Request) -> None:
        if "csp" in (request.failure or "").lower():
            self.blocked_by_policy.append(request.url)
        else:
            self.failures.append(f"{request.url}: {request.failure}")

    def static(self) -> list[Response]:
        return [r for r in self.responses if urlsplit(r.url).path.startswith(static_prefix())]


def static_prefix() -> str:
    return "/" + settings.STATIC_URL.lstrip("/")


def on_live_server(url: str, base_url: str) -> bool:
    """True for a URL of the live server itself, or one that names no host (data:, blob:)."""
    parts, server = urlsplit(url), urlsplit(base_url)
    if parts.scheme in {"data", "blob"}:
        return True
    return parts.hostname in LOCAL_HOSTS and parts.port == server.port


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)
    # The admin's stylesheet was served and applied, not only requested.
    expect(page.locator("#header")).to_have_css("background-color", ADMIN_HEADER_BG)


def check_gpu_list(page: Page, base_url: str, gpus: int) -> None:
    page.goto(f"{base_url}/admin/ingest/gpu/")
    rows = page.locator("#result_list tbody tr")
    expect(rows.first).to_be_visible()
    per_page = min(gpus, 100)  # the admin's default page size
    expect(rows).to_have_count(per_page)
    expect(page.locator("p.paginator")).to_contain_text(re.compile(rf"\b{gpus} GPUs\b"))
    expect(rows.locator("a", has_text="samples")).to_have_count(per_page)
    screenshot(page, "gpu-list")


def find_gpu(page: Page, uuid: str) -> None:
    page.fill("#searchbar", uuid)
    page.press("#searchbar", "Enter")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("th.field-uuid, td.field-uuid")).to_have_text(uuid)
    screenshot(page, "gpu-search")


def check_gpu_samples(page: Page, gpu: Gpu, metrics: list[str]) -> None:
    row = page.locator("#result_list tbody tr", has_text=gpu.uuid)
    row.get_by_role("link", name="samples", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/admin/ingest/sample/\?gpu={gpu.pk}$"))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(len(metrics))
    expect(page.locator("#filter-gpu")).to_have_value(str(gpu.pk))
    expect(page.locator("#changelist-filter")).to_contain_text(gpu.uuid)
    expect(rows.locator("td.field-gpu")).to_have_text([str(gpu)] * len(metrics))
    shown = rows.locator("td.field-metric").all_inner_texts()
    assert sorted(shown) == sorted(metrics)
    screenshot(page, "gpu-samples")


def check_api_docs(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/api/docs/")
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("GPU telemetry API")
    for path in DOCUMENTED_PATHS:
        operation = page.locator(".opblock-get").filter(
            has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
        )
        expect(operation).to_have_count(1)
        expect(operation).to_be_visible()
    screenshot(page, "api-docs")


def check_api_reference(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/api/redoc/")
    expect(page.locator("#redoc-container h1").first).to_contain_text("GPU telemetry API")
    expect(page.get_by_text("/api/v1/gpus/{id}/telemetry").first).to_be_attached()
    screenshot(page, "api-redoc")


def test_admin_and_api_docs_in_a_browser(
    transactional_db: None,
    live_server: LiveServer,
    django_user_model: type[User],
    tmp_path: Path,
) -> None:
    # transactional_db: the live server's thread reads what this test commits.
    metrics_by_gpu = load_reference_export()
    assert Sample.objects.count() == sum(map(len, metrics_by_gpu.values()))
    gpu = Gpu.objects.get(uuid=KNOWN_GPU)
    metrics = metrics_by_gpu[KNOWN_GPU]
    assert Sample.objects.filter(gpu=gpu).count() == len(metrics) <= 100  # one page
    user = django_user_model.objects.create_superuser("browser-admin", "", PASSWORD)
    base_url = live_server.url
    network = NetworkLog()

    with headless_chromium(tmp_path / "chromium-profile") as context:
        network.watch(context)
        page = context.new_page()
        log_in(page, base_url, user.username)
        check_gpu_list(page, base_url, len(metrics_by_gpu))
        find_gpu(page, KNOWN_GPU)
        check_gpu_samples(page, gpu, metrics)
        check_api_docs(page, base_url)
        check_api_reference(page, base_url)

    assert network.requests
    outside = [
        r.url
        for r in network.requests
        if not on_live_server(r.url, base_url) and r.url not in network.blocked_by_policy
    ]
    assert not outside, f"requests that left the live server: {outside}"
    assert not network.failures, f"requests that failed: {network.failures}"

    static = network.static()
    missing = [f"{r.status} {r.url}" for r in static if r.status >= 400]
    assert not missing, f"static assets that did not load: {missing}"
    served = {urlsplit(r.url).path for r in static}
    unrequested = [path for path in REQUIRED_ASSETS if static_prefix() + path not in served]
    assert not unrequested, f"static assets the pages never asked for: {unrequested}"
    # Chromium asks for /favicon.ico on its own; the admin's pages link none, so it is 404.
    errors = [
        f"{r.status} {r.url}"
        for r in network.responses
        if r.status >= 400 and urlsplit(r.url).path != "/favicon.ico"
    ]
    assert not errors, f"answers with an error status: {errors}"
