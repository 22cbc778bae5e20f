"""Attempts end to end (issue #14): real supervisors, workers, signals and databases.

Every launch of a run is an attempt, claimed by one worker with its dispatch token, heartbeated
on the database's clock and fenced: these tests kill, freeze and duplicate workers, kill the run
queue between a claim and the worker's start, and cut PostgreSQL off, and check that every run is
resumed or failed with the reason, never runs twice at once, and is never failed by an outage.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psutil
import pytest
from helpers.procs import DagdProcess, wait_for
from helpers.tcp_proxy import proxy_to

from dagd.client.client import Client

DEFS = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "attempt_defs.py"
TIMEOUT = 3.0  # worker_heartbeat_timeout_seconds in these tests
MONITORING = f"""
run_monitoring:
  worker_heartbeat_timeout_seconds: {TIMEOUT}
  max_resume_run_attempts: 1
  poll_interval_seconds: 0.5
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.fixture(params=["sqlite", "postgres"])
def storage_yaml(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    url = request.getfixturevalue("pg_url")
    return f"storage:\n  postgres:\n    url: '{url}'\n"


@pytest.fixture
def client(dagd: DagdProcess) -> Iterator[Callable[[], Client]]:
    """``client()``: a gRPC client of the test's supervisor, opened once the test has started it."""
    holder: list[Client] = []

    def opened() -> Client:
        if not holder:
            holder.append(Client.for_home(dagd.home))
        return holder[0]

    yield opened
    for c in holder:
        c.close()


def submit(dagd: DagdProcess, job: str, config: dict[str, Any]) -> str:
    result = dagd.ctl("submit", job, "--config", json.dumps(config))
    assert result.code == 0, result.stderr
    return result.stdout.strip()


def get(c: Client, run_id: str) -> dict[str, Any]:
    run, events = c.get_run(run_id)
    return {**run, "events": events}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def started(c: Client, run_id: str, attempt: int, timeout: float = 20) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        run = get(c, run_id)
        return run if run["status"] == "STARTED" and run["attempt"] == attempt else None

    return wait_for(check, timeout, f"run {run_id} STARTED as attempt {attempt}")


def job_pid(c: Client, run_id: str, attempt: int) -> int:
    def find() -> int | None:
        for line in c.read_logs(run_id)[0]:
            prefix = f"attempt {attempt} job pid "
            if line["message"].startswith(prefix):
                return int(line["message"][len(prefix) :])
        return None

    return wait_for(find, 10, f"attempt {attempt}'s job to log its pid")


def finished(c: Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        lambda: (r := get(c, run_id))["status"] in FINISHED and r, timeout, f"run {run_id} to end"
    )


@pytest.mark.timeout(120)
def test_killed_worker_is_resumed_as_attempt_2_or_fails_with_the_reason(
    dagd: DagdProcess, storage_yaml: str, client: Callable[[], Client]
) -> None:
    dagd.write_config(storage_yaml + MONITORING)
    dagd.start("-f", str(DEFS))
    c = client()
    resumable = submit(dagd, "resumable_ticker", {"seconds": 3})
    plain = submit(dagd, "ticker", {"seconds": 30})
    first = started(c, resumable, 1)["attempts"][0]["pid"]
    plain_pid = started(c, plain, 1)["attempts"][0]["pid"]

    os.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()
    started(c, resumable, 2, timeout=TIMEOUT + 10)
    took = time.monotonic() - killed_at
    os.kill(plain_pid, signal.SIGKILL)

    assert took <= TIMEOUT + 2, f"resumed {took:.2f}s after the kill (timeout {TIMEOUT}s)"
    run = finished(c, resumable)
    assert run["status"] == "SUCCESS", run
    assert [a["state"] for a in run["attempts"]] == ["LOST", "DONE"], run["attempts"]
    failed = finished(c, plain)
    assert failed["status"] == "FAILURE" and failed["error"].startswith("WORKER_DIED"), failed
    assert f"pid {plain_pid}" in failed["error"], failed["error"]
    # The killed watcher's job died with it (it must not run beside attempt 2).
    assert not [p for p in psutil.process_iter() if p.pid != os.getpid() and _is_job_of(p, plain)]


def _is_job_of(proc: psutil.Process, run_id: str) -> bool:
    try:
        return run_id in " ".join(proc.cmdline())
    except psutil.Error:
        return False


@pytest.mark.timeout(120)
def test_frozen_worker_fences_itself_and_writes_nothing_after_attempt_2_began(
    dagd: DagdProcess, storage_yaml: str, client: Callable[[], Client]
) -> None:
    dagd.write_config(storage_yaml + MONITORING)
    dagd.start("-f", str(DEFS))
    c = client()
    run_id = submit(dagd, "resumable_ticker", {"seconds": 6})
    watcher = started(c, run_id, 1)["attempts"][0]["pid"]
    job = job_pid(c, run_id, 1)

    os.kill(watcher, signal.SIGSTOP)
    try:
        job_dead_at = attempt_2_at = None
        deadline = time.monotonic() + TIMEOUT + 15
        while (job_dead_at is None or attempt_2_at is None) and time.monotonic() < deadline:
            if job_dead_at is None and gone(job):
                job_dead_at = time.monotonic()
            if attempt_2_at is None and get(c, run_id)["attempt"] >= 2:
                attempt_2_at = time.monotonic()
            time.sleep(0.05)
        assert job_dead_at is not None, "attempt 1's job kept running while its watcher was frozen"
        assert attempt_2_at is not None, "no attempt 2 was started"
        assert job_dead_at < attempt_2_at, "attempt 2 began while attempt 1's job was still running"
    finally:
        os.kill(watcher, signal.SIGCONT)
    wait_for(lambda: gone(watcher), 10, "the fenced watcher to exit")

    run = finished(c, run_id)
    assert run["status"] == "SUCCESS", run
    assert [a["state"] for a in run["attempts"]] == ["LOST", "DONE"], run["attempts"]
    assert "no heartbeat" in (run["attempts"][0]["end_reason"] or ""), run["attempts"][0]
    lines = [line["message"] for line in c.read_logs(run_id)[0]]
    second = next(i for i, m in enumerate(lines) if m.startswith("attempt 2"))
    assert "tick attempt 1" not in lines[second:], "attempt 1 wrote logs after attempt 2 began"
    statuses = [e["message"] for e in run["events"] if e["kind"] == "status"]
    assert statuses[-1] == "finished" and statuses.count("finished") == 1, statuses


@pytest.mark.timeout(90)
def test_duplicate_delivery_of_an_attempt_runs_the_job_once(
    dagd: DagdProcess, storage_yaml: str, client: Callable[[], Client], tmp_path: pathlib.Path
) -> None:
    counter = tmp_path / "starts.txt"
    dagd.write_config(storage_yaml + MONITORING)
    dagd.start("-f", str(DEFS), env={"DAGD_FAULT_DUPLICATE_WORKER": "1"})
    c = client()
    run_id = submit(dagd, "ticker", {"seconds": 0.5, "file": str(counter)})

    run = finished(c, run_id)

    assert run["status"] == "SUCCESS", run
    assert len(counter.read_text().splitlines()) == 1, counter.read_text()
    assert [a["state"] for a in run["attempts"]] == ["DONE"]
    worker_log = dagd.home / "logs" / "runs" / f"{run_id}.log"
    wait_for(lambda: "not claimed" in worker_log.read_text(), 10, "the duplicate worker to log its refusal")


@pytest.mark.timeout(90)
def test_run_queue_killed_between_claim_and_launch_launches_the_run_once(
    dagd: DagdProcess, storage_yaml: str, client: Callable[[], Client], tmp_path: pathlib.Path
) -> None:
    marker = tmp_path / "killed-after-claim"
    counter = tmp_path / "starts.txt"
    dagd.write_config(storage_yaml + MONITORING)
    dagd.start("-f", str(DEFS), env={"DAGD_FAULT_KILL_AFTER_CLAIM": str(marker)})
    c = client()
    run_id = submit(dagd, "ticker", {"seconds": 0.5, "file": str(counter)})
    wait_for(marker.exists, 10, "the run queue to claim the run and kill itself")

    run = finished(c, run_id, timeout=30)

    assert run["status"] == "SUCCESS", run
    # Both stamps are the database's: the first claim, and the dispatch of its replacement.
    first = next(e["at"] for e in run["events"] if e["message"].startswith("attempt 1:"))
    second = next(e["at"] for e in run["events"] if e["message"].startswith("attempt 2:"))
    took = (
        datetime.fromisoformat(second.replace("Z", "+00:00"))
        - datetime.fromisoformat(first.replace("Z", "+00:00"))
    ).total_seconds()
    assert took < 10, (took, run["events"])
    assert [a["state"] for a in run["attempts"]] == ["ABANDONED", "DONE"], run["attempts"]
    assert len(counter.read_text().splitlines()) == 1, counter.read_text()


@pytest.mark.timeout(120)
def test_postgres_outage_longer_than_the_heartbeat_timeout_fails_no_run(
    dagd: DagdProcess, pg_url: str, client: Callable[[], Client]
) -> None:
    parsed = urllib.parse.urlsplit(pg_url)
    port = parsed.port or 5432
    with proxy_to(parsed.hostname or "127.0.0.1", port) as proxy:
        proxied = pg_url.replace(f"{parsed.hostname}:{port}", f"127.0.0.1:{proxy.port}", 1)
        dagd.write_config(
            f"storage:\n  postgres:\n    url: '{proxied}'\n" + MONITORING
            + "daemons:\n  heartbeat_interval_seconds: 0.5\n  heartbeat_timeout_seconds: 20\n"
        )  # fmt: skip
        dagd.start("-f", str(DEFS), command=("daemon", "run"))
        c = client()
        run_id = submit(dagd, "ticker", {"seconds": 10})
        before = started(c, run_id, 1)["attempts"][0]["heartbeat_at"]

        proxy.outage()
        time.sleep(TIMEOUT * 2)  # the outage itself: longer than the heartbeat timeout
        proxy.restore()

        wait_for(
            lambda: get(c, run_id)["attempts"][0]["heartbeat_at"] != before,
            15,
            "the worker's heartbeats to resume after the outage",
        )
        run = finished(c, run_id, timeout=40)
        assert run["status"] == "SUCCESS", run
        assert run["attempt"] == 1 and [a["state"] for a in run["attempts"]] == ["DONE"], run["attempts"]
        dagd.stop()
