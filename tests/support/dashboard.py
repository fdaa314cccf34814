"""What the dashboard's browser tests share: telemetry committed as a streamer in processing
mode would commit it, a browser that may reach the live server only, and the page's log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    Route,
    expect,
)

from bench.direct_load import collect_file
from tests.support.browser import headless_chromium

LINES_PER_CHUNK = 500
ADMIN_PASSWORD = "dashboard-browser-password-5e2a"  # noqa: S105 (a throwaway test user)


def commit_pass(path: Path, *, source_id: int, pass_number: int, stamp: datetime | None) -> int:
    """Commit every line of ``path`` as one pass of a source, stamped ``stamp`` (None keeps
    the file's own times); the rows."""
    rows = 0
    for lines, result in collect_file(
        path,
        source_id=source_id,
        lines_per_chunk=LINES_PER_CHUNK,
        pass_number=pass_number,
        stamp=stamp,
    ):
        assert (result.outcome, result.rejected) == ("committed", 0), result
        rows += lines
    return rows


@dataclass
class BrowserLog:
    """Console errors and uncaught exceptions of every page, failed requests, answers with an
    error status, and requests for anywhere but the live server (refused, not sent)."""

    server: str
    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.route("**/*", self.only_to_the_server)
        context.on("page", self.watch_page)
        context.on("requestfailed", self.on_failure)
        context.on("response", self.on_response)

    def watch_page(self, page: Page) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def only_to_the_server(self, route: Route) -> None:
        url = route.request.url
        parts, server = urlsplit(url), urlsplit(self.server)
        if (parts.hostname, parts.port) == (server.hostname, server.port):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("blockedbyclient")

    def on_failure(self, request: Request) -> None:
        # A request still running when the test moves to the next page is cancelled by the
        # browser (a refresh in flight): not a failure of the page.
        if request.failure != "net::ERR_ABORTED":
            self.errors.append(f"{request.url}: {request.failure}")

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.errors.append(f"{response.status} {response.url}")

    def check(self) -> None:
        assert not self.refused, f"requests that would have left 127.0.0.1: {self.refused}"
        assert not self.errors, f"the pages logged errors: {self.errors}"


@contextmanager
def dashboard_browser(profile: Path, server: str) -> Iterator[tuple[BrowserContext, BrowserLog]]:
    """Headless Chromium in UTC (times on the pages then read as the API writes them)."""
    log = BrowserLog(server)
    with headless_chromium(profile, timezone_id="UTC", locale="en-US") as context:
        log.watch(context)
        yield context, log


def log_in(page: Page, server: str, username: str) -> None:
    """Sign in through the admin's login form: the session the dashboard's pages then use."""
    page.goto(f"{server}/admin/login/?next=/dashboard/")
    page.fill("#id_username", username)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
