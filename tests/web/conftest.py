"""Fixtures of the browser tests: one deployment per module, one Chromium per session, a page per test.

On a failing test the page is saved as a screenshot; the failure report names the file. Set
``DAGD_TEST_SCREENSHOTS`` to choose the directory (default: ``$TMPDIR/dagd-web-screenshots``).
"""

from __future__ import annotations

import os
import pathlib
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.procs import DagdProcess, assert_no_leftovers
from helpers.web import CHROMIUM, CHROMIUM_ARGS

SCREENSHOTS = pathlib.Path(
    os.environ.get("DAGD_TEST_SCREENSHOTS") or pathlib.Path(tempfile.gettempdir()) / "dagd-web-screenshots"
)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; "
            "scripts/test installs it when run as root)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (own cookies) and page; dialogs (``alert``) are recorded and dismissed."""
    headers = getattr(request, "param", {"x-dagd-user": "alice"})
    context = browser.new_context(extra_http_headers=headers, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]

    def on_dialog(dialog: Any) -> None:
        page.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    page = getattr(item, "funcargs", {}).get("page")
    if page is None:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.nodeid)}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
        note = f"screenshot of the page at failure: {path} (url {page.url})"
    except Exception as exc:  # a crashed page must not hide the test's own failure
        note = f"could not save a screenshot to {path}: {exc!r}"
    report.sections.append(("screenshot", note))


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    home = tmp_path_factory.mktemp("web") / "home"
    home.mkdir()
    return home


@pytest.fixture(scope="module")
def module_dagd(module_home: pathlib.Path) -> Iterator[DagdProcess]:
    proc = DagdProcess(module_home)
    yield proc
    proc.stop()
    assert_no_leftovers(module_home)
