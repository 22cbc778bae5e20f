"""The web UI's live parts ride the supervisor's streams (server-sent events, issue #20), in a real
headless Chromium against a real ``dagctl dev``. The pages' polling is set to an hour here, so
whatever changes on screen without a reload within the test's deadline came through a stream."""

from __future__ import annotations

import http.client
import pathlib
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.procs import DagdProcess
from helpers.web import WebDeployment

WORKSPACE = pathlib.Path(__file__).parent / "workspace.yaml"

CONFIG = """
webserver:
  refresh_interval_seconds: 3600
"""


@pytest.fixture(scope="module")
def web(module_dagd: DagdProcess) -> Iterator[WebDeployment]:
    module_dagd.write_config(CONFIG)
    deployment = WebDeployment(module_dagd)
    deployment.start("-w", str(WORKSPACE))
    yield deployment


def status_cell(page: Any) -> Any:
    return page.locator("#run-head dd[data-field=status]")


def read_events(url: str, until: str, timeout: float) -> tuple[int, str, str]:
    """GET a server-sent event stream until ``until`` appears: (status, content type, text)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        text = ""
        while until not in text and time.monotonic() < deadline:
            line = response.fp.readline()
            if not line:
                break
            text += line.decode()
        return response.status, response.getheader("content-type") or "", text
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_a_run_page_turns_success_and_shows_its_last_log_line_without_a_reload(
    web: WebDeployment, page: Any
) -> None:
    with web.client() as client:
        client.set_queue_paused(True)
        try:
            run_id = client.submit("echo_config", run_config={"marker": "last-line"})["run_id"]
            page.goto(f"{web.url}/runs/{run_id}")
            assert status_cell(page).inner_text().strip() == "QUEUED"
            assert page.locator("#run-log .log-line").count() == 0
        finally:
            client.set_queue_paused(False)
    page.locator("#run-head dd[data-field=status]", has_text="SUCCESS").wait_for(timeout=60_000)
    page.locator("#run-log .log-line", has_text="last-line").wait_for(timeout=30_000)
    page.locator("#run-log[data-finished=true]").wait_for(timeout=30_000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1, "no reload"


@pytest.mark.timeout(90)
def test_the_runs_list_shows_a_new_run_without_a_reload(web: WebDeployment, page: Any) -> None:
    page.goto(f"{web.url}/runs")
    with web.client() as client:
        run_id = client.submit("hello")["run_id"]
    page.locator(f"#runs-table a[href='/runs/{run_id}']").first.wait_for(timeout=30_000)


@pytest.mark.timeout(60)
def test_the_event_stream_is_server_sent_events_with_the_cursor_as_id(web: WebDeployment) -> None:
    with web.client() as client:
        run_id = client.submit("hello")["run_id"]
    status, kind, text = read_events(f"{web.url}/live?run={run_id}", "id: v1.", timeout=20)
    assert status == 200 and kind.startswith("text/event-stream"), (status, kind)
    assert re.search(r"id: v1\.\S+\n", text), text[:500]  # the cursor, for Last-Event-ID


@pytest.mark.timeout(90)
def test_a_change_between_the_page_render_and_its_stream_opening_is_shown(
    web: WebDeployment, page: Any
) -> None:
    """Regression: a run page's stream starts "from now", so a change made after the page was
    rendered but before the stream was subscribed was never shown (the run page stayed at STARTING
    while the run ran; polling is off once the stream is up). The stream's first event, ``ready``,
    now makes the page refresh once. Here the run is cancelled while the page's stream request is
    held back, and it is finished before the stream opens: nothing later would show it."""
    with web.client() as client:
        client.set_queue_paused(True)
        try:
            run_id = client.submit("hello")["run_id"]

            def hold_back_the_stream(route: Any) -> None:
                client.terminate(run_id)
                deadline = time.monotonic() + 20
                while web.run(run_id)["status"] != "CANCELED" and time.monotonic() < deadline:
                    time.sleep(0.05)  # polling interval inside a deadline
                route.continue_()

            page.route(re.compile(r"/live\?run="), hold_back_the_stream)
            page.goto(f"{web.url}/runs/{run_id}")
            status_cell(page).and_(page.locator("dd", has_text="CANCELED")).wait_for(timeout=20_000)
            assert web.run(run_id)["status"] == "CANCELED"
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1, "no reload"
        finally:
            client.set_queue_paused(False)
