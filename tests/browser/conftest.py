"""The demo page in a real browser: Debian's chromium, driven by Playwright for Python.

Playwright never downloads a browser here: it is pointed at the system chromium with
`executable_path`, and PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD is set. Each browser gets a fresh
profile and, for the microphone tests, Chromium's fake audio capture playing a WAV file.
Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Playwright, sync_playwright

from tests.support.processes import ROOT
from tests.support.stack import Stack

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

ARTIFACTS = ROOT / "test-artifacts"

TOKEN = "demo-test-token"
SHORT_SESSION_S = 2
LAUNCH_TIMEOUT_MS = 30_000
POLL_MS = 50
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def chromium_path() -> str:
    """The system chromium; missing is an error, not a skip (.ci/install-test-deps.sh)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError(
            "chromium is not installed: the browser tests drive it (apt-get install chromium)"
        )
    return path


@dataclass(frozen=True)
class Servers:
    open: str  # http://127.0.0.1:PORT, authentication off: en (Whisper, as `make run`), ja (stub)
    tokens: str  # the same routes, ENDPOINT_AUTH=tokens accepting TOKEN
    demo_off: str  # ENDPOINT_DEMO=off
    short: str  # sessions end after SHORT_SESSION_S with the session_too_long error


@pytest.fixture(scope="package")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    directory = tmp_path_factory.mktemp("stack")
    token_file = directory / "tokens"
    token_file.write_text(hashlib.sha256(TOKEN.encode()).hexdigest() + "\n")
    with Stack(directory) as stack:
        ja = stack.intermediate("intermediate-ja", [stack.engine_stub("engine-ja")])
        en = stack.intermediate(
            "intermediate-en", [stack.whisper("en", capacity=2)], engine_capacity=2
        )
        router = stack.router({"ja": [ja], "en": [en]})
        urls = [
            f"http://127.0.0.1:{stack.endpoint(router, **settings).ports['http']}"
            for settings in (
                {},
                {"auth": "tokens", "token_file": token_file},
                {"demo": "off"},
                {"max_session_seconds": SHORT_SESSION_S},
            )
        ]
        yield Servers(*urls)


def wait_for(page: Page, expression: str, timeout_s: float) -> None:
    """Poll `expression` in the page until it is true. Playwright's wait_for_function
    evaluates strings with eval, which the page's CSP rightly forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression} within {timeout_s} s")
        page.wait_for_timeout(POLL_MS)


@dataclass
class Tab:
    page: Page
    problems: list[str]  # console errors and CSP violations

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def open_page(
    playwright: Playwright, tmp_path: Path
) -> Iterator[Callable[[str, Path | None], Tab]]:
    """`open_page(url, wav)`: a fresh chromium (its microphone playing `wav` once) on `url`."""
    browsers: list[BrowserContext] = []

    def open_(url: str, wav: Path | None = None) -> Tab:
        flags = list(CHROMIUM_FLAGS)
        if wav is not None:
            flags.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
        browser = playwright.chromium.launch_persistent_context(
            tmp_path / f"profile-{len(browsers)}",  # a fresh --user-data-dir
            executable_path=chromium_path(),
            args=flags,
            timeout=LAUNCH_TIMEOUT_MS,
        )
        browsers.append(browser)
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_default_timeout(20_000)
        problems: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                problems.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url)
        # The page fills its choices from config.json once it has loaded.
        page.wait_for_selector("#process option", state="attached")
        return Tab(page, problems)

    yield open_
    for browser in browsers:
        with contextlib.suppress(Exception):
            browser.close()
