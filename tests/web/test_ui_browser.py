"""The web UI in a real headless Chromium against a real ``dagctl dev`` (supervisor, daemons, webserver).

One deployment serves the whole module. Its run coordinator is the attribution example
(``examples/custom_coordinator``), which tags each run with the ``x-dagd-user`` header of its
submission and refuses submissions without it: browser pages send that header unless a test says
otherwise. Daemon restarts back off 3 s, so an unhealthy daemon stays visible for a few refreshes.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from helpers.procs import DagdProcess, wait_for
from helpers.web import WebDeployment, form_session, request

REPO = pathlib.Path(__file__).resolve().parents[2]
# The shared test jobs (tests/fixtures/defs.py) and a second location with a schedule and a sensor.
WORKSPACE = REPO / "tests" / "web" / "workspace.yaml"
CONFIG = """
run_coordinator:
  module: attribution
  class: AttributingRunCoordinator
  config: {max_concurrent_runs: 10}
daemons:
  restart: {initial_backoff_seconds: 3, max_backoff_seconds: 3}
webserver:
  refresh_interval_seconds: 0.5
"""
DAEMONS = {"scheduler", "run_queue", "sensor", "run_monitoring"}
RUN_URL = re.compile(r"/runs/([0-9a-f-]{36})$")


@pytest.fixture(scope="module")
def web(module_dagd: DagdProcess) -> Iterator[WebDeployment]:
    module_dagd.write_config(CONFIG)
    pythonpath = os.pathsep.join(
        p for p in (str(REPO / "examples" / "custom_coordinator"), os.environ.get("PYTHONPATH")) if p
    )
    deployment = WebDeployment(module_dagd)
    deployment.start("-w", str(WORKSPACE), env={"PYTHONPATH": pythonpath})
    yield deployment
    # Ctrl-C, as a user would: the webserver must go with everything else (module_dagd then
    # checks that no process of this home is left).
    module_dagd.signal(signal.SIGINT)
    assert module_dagd.wait_exit(timeout=30) == 0, module_dagd.log()
    assert not (module_dagd.home / "webserver.json").exists(), "webserver.json left behind"


def launch(page: Any, web: WebDeployment, job: str, *, config: str = "", tags: str = "") -> str:
    """Launch from the launchpad like a user; returns the run id from the page we land on."""
    page.goto(f"{web.url}/launchpad")
    page.select_option("select[name=job]", job)
    if tags:
        page.fill("textarea[name=tags]", tags)
    if config:
        page.fill("textarea[name=run_config]", config)
    page.click("button:has-text('Launch run')")
    page.wait_for_url(RUN_URL)
    match = RUN_URL.search(page.url)
    assert match, page.url
    return match.group(1)


def status_cell(page: Any) -> Any:
    return page.locator("#run-head dd[data-field=status]")


# -- Deployment → Daemons ------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_daemons_page_lists_four_healthy_daemons(web: WebDeployment, page: Any) -> None:
    page.goto(f"{web.url}/deployment/daemons")
    rows = page.locator("tr[data-daemon]")
    assert {rows.nth(i).get_attribute("data-daemon") for i in range(rows.count())} == DAEMONS
    for name in DAEMONS:
        row = page.locator(f"tr[data-daemon={name}]")
        assert row.get_attribute("data-healthy") == "true", row.inner_text()
        assert row.locator("[data-health]").inner_text() == "healthy"
    assert page.locator("[data-summary]").inner_text().startswith("4 of 4 daemons healthy")
    assert page.locator("[data-banner]").count() == 0


@pytest.mark.timeout(60)
def test_killed_daemon_shows_unhealthy_then_healthy_again(web: WebDeployment, page: Any) -> None:
    page.goto(f"{web.url}/deployment/daemons")
    row = page.locator("tr[data-daemon=run_queue]")
    pid = int(row.get_attribute("data-pid"))
    assert psutil.Process(pid).is_running()

    os.kill(pid, signal.SIGKILL)
    # The page refreshes itself: no reload here.
    row.and_(page.locator("[data-healthy=false]")).wait_for(timeout=15_000)
    assert row.locator("[data-health]").inner_text() == "unhealthy"
    banner = page.locator("[data-banner]", has_text="run_queue daemon is not healthy")
    banner.wait_for(timeout=10_000)

    row.and_(page.locator("[data-healthy=true]")).wait_for(timeout=30_000)
    new_pid = int(page.locator("tr[data-daemon=run_queue]").get_attribute("data-pid"))
    assert new_pid != pid
    banner.wait_for(state="detached", timeout=10_000)
    assert web.daemons()["run_queue"]["healthy"]


# -- runs ------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_run_launched_from_launchpad_goes_from_queue_to_finished_success(
    web: WebDeployment, page: Any
) -> None:
    run_id = launch(page, web, "sleeper", config='{"seconds": 4}', tags="team=web")
    assert page.locator(".notice").inner_text() == "Run launched."

    def listed_unfinished() -> str | None:
        for tab in ("queued", "in_progress"):
            page.goto(f"{web.url}/runs?tab={tab}")
            if page.locator(f"tr[data-run-id='{run_id}']").count():
                return tab
        return None

    tab = wait_for(listed_unfinished, 20, f"run {run_id} on the Queued or In progress tab", interval=0.2)
    assert tab in {"queued", "in_progress"}

    page.goto(f"{web.url}/runs?tab=finished")
    row = page.locator(f"tr[data-run-id='{run_id}']")
    row.wait_for(timeout=30_000)  # the tab refreshes itself until the run has finished
    assert row.get_attribute("data-status") == "SUCCESS"
    assert row.locator(".badge").inner_text() == "SUCCESS"
    assert web.run(run_id)["status"] == "SUCCESS"

    page.goto(f"{web.url}/runs/{run_id}")
    assert status_cell(page).inner_text() == "SUCCESS"
    page.locator("#run-log", has_text="worker pid").wait_for()
    assert page.locator("ol.timeline li", has_text="SUCCESS").count() == 1
    # Its one attempt: claimed on this host, then DONE.
    assert page.locator("[data-field='attempt']").inner_text() == "1"
    attempt_row = page.locator("table.attempts-table tbody tr")
    assert attempt_row.count() == 1 and attempt_row.locator("td").nth(1).inner_text() == "DONE"


@pytest.mark.timeout(90)
def test_terminate_from_run_page_cancels_the_run(web: WebDeployment, page: Any) -> None:
    run_id = launch(page, web, "sleeper", config='{"seconds": 120}')
    page.locator("#run-head dd[data-field=status]", has_text="STARTED").wait_for(timeout=30_000)
    page.locator("#run-log", has_text="worker pid").wait_for(timeout=10_000)  # the log follows live

    page.click("button:has-text('Terminate')")
    page.wait_for_url(re.compile(rf"/runs/{run_id}"))
    status_cell(page).and_(page.locator("dd", has_text="CANCELED")).wait_for(timeout=30_000)
    assert web.run(run_id)["status"] == "CANCELED"
    assert page.locator("button:has-text('Terminate')").count() == 0


@pytest.mark.timeout(60)
def test_tag_with_script_is_shown_as_text(web: WebDeployment, page: Any) -> None:
    payload = (
        '<script>window.__dagd_xss = 1; alert("xss")</script><img src=x onerror="window.__dagd_xss = 2">'
    )
    run_id = web.submit("hello", tags={"note": payload})["run_id"]

    page.goto(f"{web.url}/runs/{run_id}")
    assert page.locator("td.tag-value", has_text="<script>").inner_text() == payload
    page.goto(f"{web.url}/runs?tab=all")
    note = page.locator(".tag-key", has_text="note")
    tag = page.locator(f"tr[data-run-id='{run_id}'] .tag", has=note).locator(".tag-value")
    assert tag.inner_text() == payload
    assert page.evaluate("window.__dagd_xss") is None
    assert page.locator("script:not([src])").count() == 0
    assert page.dialogs == []
    assert "&lt;script&gt;" in page.content()

    # The launchpad echoes what was typed when it refuses a submission: as text too.
    page.goto(f"{web.url}/launchpad")
    page.select_option("select[name=job]", "hello")
    page.fill("textarea[name=tags]", f"note={payload}")
    page.fill("input[name=priority]", "<script>alert(2)</script>")
    page.click("button:has-text('Launch run')")
    page.locator("[data-error]", has_text="priority must be an integer").wait_for()
    assert page.locator("textarea[name=tags]").input_value() == f"note={payload}"
    assert page.evaluate("window.__dagd_xss") is None
    assert page.dialogs == []


# -- attribution -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_launchpad_passes_request_headers_to_the_coordinator_hook(web: WebDeployment, page: Any) -> None:
    run_id = launch(page, web, "hello")
    assert web.run(run_id)["tags"]["submitted_by"] == "alice"
    assert page.locator("td.tag-value", has_text="alice").count() == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("page", [{}], indirect=True)
def test_launchpad_without_attribution_header_is_refused_by_the_hook(web: WebDeployment, page: Any) -> None:
    before = len(web.runs())
    page.goto(f"{web.url}/launchpad")
    page.select_option("select[name=job]", "hello")
    page.click("button:has-text('Launch run')")
    page.locator("[data-error]", has_text="needs the x-dagd-user header").wait_for()
    assert len(web.runs()) == before


# -- CSRF ------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_post_without_csrf_token_is_refused_and_changes_nothing(web: WebDeployment) -> None:
    user = {"x-dagd-user": "mallory"}
    before = len(web.runs())
    restarts = web.daemons()["sensor"]["restarts"]
    cookies, token = form_session(web.url)
    forged = [
        ({}, {"job": "hello"}),  # neither cookie nor token
        (cookies, {"job": "hello"}),  # the victim's cookie rides along, no token
        ({}, {"job": "hello", "csrf_token": token}),  # a stolen token without its cookie
        (cookies, {"job": "hello", "csrf_token": token + "x"}),  # a wrong token
        ({"dagd_csrf": "forged.value"}, {"job": "hello", "csrf_token": "forged.value"}),  # self-made pair
    ]
    for jar, form in forged:
        refused = request(web.url, "/launchpad", method="POST", form=form, cookies=jar, headers=user)
        assert refused.status == 403, (jar, form, refused.status, refused.body[:200])
    cross_site = request(
        web.url,
        "/launchpad",
        method="POST",
        form={"job": "hello", "csrf_token": token},
        cookies=cookies,
        headers={**user, "Origin": "http://evil.example"},
    )
    assert cross_site.status == 403, cross_site.body[:200]
    restart = request(web.url, "/deployment/daemons/sensor/restart", method="POST", form={}, cookies=cookies)
    assert restart.status == 403
    assert len(web.runs()) == before
    assert web.daemons()["sensor"]["restarts"] == restarts

    # The same request with the token goes through: the refusals above were the CSRF check.
    allowed = request(
        web.url, "/launchpad", method="POST", form={"job": "hello", "csrf_token": token}, cookies=cookies,
        headers=user,
    )  # fmt: skip
    assert allowed.status == 303, allowed.body[:300]
    assert len(web.runs()) == before + 1


@pytest.mark.timeout(60)
def test_pages_render_and_send_security_headers(web: WebDeployment, page: Any) -> None:
    web.submit("hello")  # the timeline below needs a run, whichever tests ran before on this deployment
    for path, heading in [
        ("/", "Overview"),
        ("/runs", "Runs"),
        ("/jobs", "Jobs"),
        ("/launchpad", "Launchpad"),
        ("/deployment/configuration", "Deployment"),
        ("/deployment/workers", "Deployment"),
        ("/schedules", "Schedules"),
        ("/sensors", "Sensors"),
    ]:
        response = page.goto(f"{web.url}{path}")
        assert response.status == 200, path
        assert page.locator("h1").first.inner_text() == heading
        assert "script-src 'self'" in response.headers["content-security-policy"]
    page.goto(f"{web.url}/")
    assert page.locator("svg.queue-chart").count() == 1
    assert page.locator("svg.gantt a").count() >= 1  # one row per recent run, each a link
    page.goto(f"{web.url}/deployment/configuration")
    assert "AttributingRunCoordinator" in page.locator("main").inner_text()
    assert page.locator("[data-storage]").inner_text().startswith("sqlite:")
    page.goto(f"{web.url}/deployment/workers")  # the local launcher: no worker hosts, said so
    assert page.locator("[data-summary]").inner_text().startswith("No worker hosts")
    assert page.locator("nav.tabs a.active").inner_text() == "Workers"


# -- languages -------------------------------------------------------------------------------------

JAPANESE_BROWSER = {"x-dagd-user": "alice", "Accept-Language": "ja,en-US;q=0.8,en;q=0.7"}


def daemon_names(page: Any) -> set[str]:
    rows = page.locator("tr[data-daemon]")
    return {rows.nth(i).get_attribute("data-daemon") for i in range(rows.count())}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("page", [JAPANESE_BROWSER], indirect=True)
def test_japanese_browser_gets_japanese_pages_and_the_switch_back_to_english_stays(
    web: WebDeployment, page: Any
) -> None:
    page.goto(f"{web.url}/deployment/daemons")
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.locator("h1").inner_text() == "デプロイメント"
    assert page.locator("nav.tabs a.active").inner_text() == "デーモン"
    assert page.locator("table.daemons th").all_inner_texts()[:4] == [
        "デーモン",
        "ヘルス",
        "状態",
        "最後のハートビート",
    ]
    assert daemon_names(page) == DAEMONS
    assert page.locator("[data-health]").all_inner_texts() == ["正常"] * 4
    assert page.locator("[data-summary]").inner_text() == "デーモン 4 個中 4 個が正常です。"
    assert page.locator("button", has_text="再起動").count() == 4
    page.goto(f"{web.url}/deployment/workers")
    assert page.locator("nav.tabs a.active").inner_text() == "ワーカー"
    assert page.locator("[data-summary]").inner_text().startswith("ワーカーホストはありません")
    for path, heading in [
        ("/", "概要"),
        ("/runs", "実行"),
        ("/jobs", "ジョブ"),
        ("/launchpad", "ランチパッド"),
        ("/deployment/configuration", "デプロイメント"),
        ("/schedules", "スケジュール"),
        ("/sensors", "センサー"),
    ]:
        page.goto(f"{web.url}{path}")
        assert page.locator("h1").first.inner_text() == heading, path
        assert page.locator("header nav a").first.inner_text() == "概要"

    page.goto(f"{web.url}/deployment/daemons")
    page.click("[data-lang-switch] button[value=en]")
    page.locator("h1", has_text="Deployment").wait_for()
    assert page.url == f"{web.url}/deployment/daemons"  # the same page, now in English
    assert page.locator("html").get_attribute("lang") == "en"
    assert daemon_names(page) == DAEMONS
    assert page.locator("[data-health]").all_inner_texts() == ["healthy"] * 4
    assert page.locator("[data-summary]").inner_text().startswith("4 of 4 daemons healthy")

    # Remembered: other pages and later visits stay English though the browser still asks for Japanese.
    page.goto(f"{web.url}/runs")
    assert page.locator("h1").inner_text() == "Runs"
    page.goto(f"{web.url}/deployment/daemons")
    assert page.locator("h1").inner_text() == "Deployment"
    assert page.locator("[data-lang-switch] button[aria-pressed=true]").inner_text() == "English"

    page.click("[data-lang-switch] button[value=ja]")
    page.locator("h1", has_text="デプロイメント").wait_for()
    page.reload()
    assert page.locator("[data-health]").first.inner_text() == "正常"


# -- what a Dagster user looks for (issue #18.10) --------------------------------------------------

LOG_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z ")


@pytest.mark.timeout(90)
def test_jobs_page_shows_each_job_with_its_instigators_runs_and_a_prefilled_launch(
    web: WebDeployment, page: Any
) -> None:
    run_id = web.submit("daily_report", tags={"note": "first"})["run_id"]
    page.goto(f"{web.url}/jobs")
    row = page.locator("tr[data-job=daily_report]")
    assert "Builds the daily report." in row.locator("[data-description]").inner_text()
    assert "Reads yesterday's runs" in row.locator("[data-description]").inner_text()
    assert row.locator("[data-tags] .tag").all_inner_texts() == ["dagd/priority=2", "team=analytics"]
    assert row.locator("[data-schedules] a").inner_text() == "daily_report_morning"
    assert row.locator("[data-sensors] a").inner_text() == "report_requests"
    row.locator(f"[data-runs] [data-run-id='{run_id}']").wait_for()  # its latest runs
    assert page.locator("tr[data-job]").count() == 6  # the five test jobs and daily_report
    assert page.locator("tr[data-job=hello] [data-schedules]").inner_text() == "-"

    row.locator("[data-launch]").click()
    page.wait_for_url(re.compile(r"/launchpad\?job=daily_report$"))
    assert page.locator("select[name=job]").input_value() == "daily_report"
    assert page.locator("textarea[name=tags]").input_value() == "dagd/priority=2\nteam=analytics"
    # Another job: its own tags replace the untouched ones.
    page.select_option("select[name=job]", "prioritized")
    assert page.locator("textarea[name=tags]").input_value() == "dagd/priority=3"
    page.select_option("select[name=job]", "daily_report")
    page.click("button:has-text('Launch run')")
    page.wait_for_url(RUN_URL)
    launched = web.run(RUN_URL.search(page.url).group(1))  # type: ignore[union-attr]
    assert launched["job_name"] == "daily_report"
    assert launched["tags"]["team"] == "analytics" and launched["priority"] == 2


@pytest.mark.timeout(90)
def test_run_page_shows_run_config_and_launch_again_starts_from_it(web: WebDeployment, page: Any) -> None:
    run_id = launch(page, web, "echo_config", config='{"day": "2026-05-01", "limit": 3}', tags="team=web")
    assert page.locator("#run-config").inner_text() == '{\n  "day": "2026-05-01",\n  "limit": 3\n}'

    page.click("a:has-text('Launch again')")
    page.wait_for_url(re.compile(rf"/launchpad\?run={run_id}$"))
    assert page.locator("select[name=job]").input_value() == "echo_config"
    assert page.locator("textarea[name=tags]").input_value() == "submitted_by=alice\nteam=web"
    assert json.loads(page.locator("textarea[name=run_config]").input_value()) == {
        "day": "2026-05-01",
        "limit": 3,
    }
    page.click("button:has-text('Launch run')")
    page.wait_for_url(RUN_URL)
    again = web.run(RUN_URL.search(page.url).group(1))  # type: ignore[union-attr]
    assert again["run_id"] != run_id
    assert again["run_config"] == {"day": "2026-05-01", "limit": 3}


@pytest.mark.timeout(90)
def test_log_lines_have_milliseconds_and_a_filter(web: WebDeployment, page: Any) -> None:
    with web.client() as client:
        run_id = client.submit("sleeper", run_config={"seconds": 0.5})["run_id"]
    wait_for(lambda: web.run(run_id)["status"] == "SUCCESS", 30, f"run {run_id} to succeed", interval=0.2)
    page.goto(f"{web.url}/runs/{run_id}")
    lines = page.locator("#run-log .log-line")
    lines.first.wait_for()
    texts = lines.all_inner_texts()
    assert any("worker pid" in t for t in texts), texts
    assert all(LOG_TIME.match(t) for t in texts), texts

    page.fill("#log-filter", "WORKER PID")  # as you type, case-insensitive
    visible = page.locator("#run-log .log-line:visible")
    assert visible.count() == 1 and "worker pid" in visible.inner_text()
    assert lines.count() == len(texts)  # hidden, not removed
    assert "q=WORKER" in page.url  # a reload keeps the filter
    page.reload()
    assert page.locator("#run-log .log-line:visible").count() == 1
    page.fill("#log-filter", "")
    assert page.locator("#run-log .log-line:visible").count() == len(texts)


@pytest.mark.timeout(90)
def test_live_log_lines_have_milliseconds_and_follow_the_filter(web: WebDeployment, page: Any) -> None:
    # The queue is paused, so the page opens on an empty log and every line arrives through app.js.
    with web.client() as client:
        client.set_queue_paused(True)
        try:
            run_id = client.submit("echo_config", run_config={"seconds": 1})["run_id"]
            page.goto(f"{web.url}/runs/{run_id}?q=config%3D")
            assert page.locator("#run-log .log-line").count() == 0
            assert page.locator("#log-filter").input_value() == "config="
        finally:
            client.set_queue_paused(False)
    line = page.locator("#run-log .log-line", has_text="config=")
    line.wait_for(timeout=30_000)
    assert LOG_TIME.match(line.inner_text()), line.inner_text()
    page.locator("#run-log[data-finished=true]").wait_for(timeout=30_000)
    assert page.locator("#run-log .log-line:visible").count() == 1  # the filter applies to new lines too
