"""Browser tests: Debian's Chromium driven by Playwright for Python (never ``playwright
install``: nothing is downloaded), one browser per session, a fresh context (storage, cookies)
per test. Screenshots go to ``$ARTIFACTS_DIR`` (default ``.artifacts/e2e/``).

A missing Chromium skips these tests locally and fails them under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import ROOT, unavailable

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", ROOT / ".artifacts" / "e2e"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the dashboard in a real headless Chromium")
    config.addinivalue_line(
        "markers",
        "expected_console(pattern): console errors or failed requests this test causes on "
        "purpose (a regex); every other one fails the test",
    )


def chromium_path() -> str:
    found = os.environ.get("SMOKEHOUSE_TEST_CHROMIUM") or shutil.which("chromium")
    if not found or not Path(found).exists():
        unavailable("chromium (apt-get install chromium)")
    return str(found)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One browser for the e2e tests only: Playwright's sync API keeps an event loop running on
    the main thread while it is open, which would break every later test that calls
    ``asyncio.run`` — so it closes when the last e2e test is done, not at session end."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary user-data dir, removed on close
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 430, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    problems: list[str] = []  # what a person would see as red in the console
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    page.on("requestfailed", lambda req: problems.append(_failed(req)))
    page.on(
        "response",
        lambda response: (
            problems.append(f"HTTP {response.status} {response.url}")
            if response.status >= 400
            else None
        ),
    )
    try:
        yield page
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            shoot(page, f"{request.node.name}-failed")
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    expected = [re.compile(m.args[0]) for m in request.node.iter_markers("expected_console")]
    unexpected = [p for p in problems if p and not any(pattern.search(p) for pattern in expected)]
    assert not unexpected, f"console errors or failed requests: {unexpected}"


def _failed(request: Any) -> str:
    """A failed request, or "" for one the page itself gave up (a navigation cancels fetches)."""
    failure = request.failure or ""
    if "ERR_ABORTED" in failure:
        return ""
    return f"failed: {request.method} {request.url} {failure}"


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


def shoot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """``screenshot(page, "step")`` saves ``<test>-<step>.png`` under the artifacts dir."""
    return lambda page, step: shoot(page, f"{request.node.name}-{step}")


def log_in(page: Any, base_url: str, secret: str) -> None:
    """Log in with an access key's secret: the page exchanges it for a session token and keeps
    only the token (the secret is in no storage afterwards)."""
    page.goto(base_url + "/")
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation", name="Sections").wait_for()
    stored = page.evaluate("() => JSON.stringify([{...sessionStorage}, {...localStorage}])")
    assert secret not in stored
    assert "shs1." in stored


def secret_sent(requests: list[Any], secret: str) -> list[str]:
    """The requests (but the login) whose headers or body carry ``secret``."""
    found = []
    for request in requests:
        if request.url.endswith("/auth/session"):
            continue
        text = repr(request.headers) + (request.post_data or "")
        if secret in text:
            found.append(f"{request.method} {request.url}")
    return found


def unlabelled_controls(page: Any) -> list[str]:
    """Form controls and buttons a screen reader could not name (should be none)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button, a[href]")]
            .filter((el) => !el.closest("[hidden]"))
            .filter((el) => el.tagName === "BUTTON" || el.tagName === "A"
                ? !(el.getAttribute("aria-label") || el.textContent.trim())
                : !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
            .map((el) => el.outerHTML.slice(0, 120))"""
    )
    return found
