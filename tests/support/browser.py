"""Debian's Chromium, headless, driven by Playwright: it never downloads a browser of its own.

``make browser`` installs Chromium; a test that needs it fails, never skips, without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect, sync_playwright

# The real binary first: /usr/bin/chromium is Debian's wrapper script around it.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def chromium_executable() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    pytest.fail("Debian's Chromium is not installed: run `make browser` (as root)")


@contextmanager
def headless_chromium(profile: Path, **context_options: Any) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile, that reaches for nothing in the background.

    ``context_options`` go to Playwright's context (a time zone or locale to emulate).

    Playwright's sync API runs an event loop in this thread, where Django refuses database
    queries: the test queries before it starts the browser, and the browser closes before
    the test database is flushed.
    """
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_executable(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1920, "height": 1080},
            **context_options,
        )
        context.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()
