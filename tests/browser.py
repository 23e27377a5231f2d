"""Debian's Chromium driven by Playwright (sync API, in a worker thread), no browser download.

Tests that need it fail, not skip, when Chromium is missing, saying how to install it.
Screenshots go to `.test-artifacts/` (or $TOKENROUTE_TEST_ARTIFACTS) to be looked at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is not installed: apt-get install -y chromium (Debian's package)")
    return found


def artifacts() -> Path:
    folder = Path(os.environ.get("TOKENROUTE_TEST_ARTIFACTS", ROOT / ".test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def in_browser(script: Callable[[Any], T]) -> T:
    """Run `script(page)` in a fresh headless Chromium, in a thread (Playwright's sync API
    has its own loop); the browser is closed whatever happens."""
    executable = chromium_path()

    def run() -> T:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                return script(page)
            finally:
                browser.close()

    return await trio.to_thread.run_sync(run)
