"""Runs end to end: real ``dagctl dev``, real run workers, real signals.

Each test starts a supervisor on the fixtures' jobs (``tests/fixtures/defs.py``) in a fresh
``DAGD_HOME`` and drives it only through the ``dagctl`` command line, the way a user would.
"""

from __future__ import annotations

import pathlib
import re
import signal
from typing import Any

import psutil
import pytest
from helpers.procs import DagdProcess, assert_no_leftovers, dagctl, processes_for_home, wait_for

RUN_KEYS = {"run_id", "job_name", "status", "tags", "priority", "created_at", "started_at", "ended_at"}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


# -- helpers -----------------------------------------------------------------------------------


def submit(dagd: DagdProcess, job: str, *args: str) -> dict[str, Any]:
    result = dagd.ctl("submit", job, *args, "--json")
    assert result.code == 0, f"submit {job} {args} exited {result.code}: {result.stderr}"
    run = result.json()
    assert RUN_KEYS <= set(run), f"run JSON lacks {RUN_KEYS - set(run)}: {run}"
    return run


def show(dagd: DagdProcess, run_id: str) -> dict[str, Any]:
    result = dagd.ctl("runs", "show", run_id, "--json")
    assert result.code == 0, f"runs show {run_id} exited {result.code}: {result.stderr}"
    return result.json()


def wait_status(dagd: DagdProcess, run_id: str, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = show(dagd, run_id)
        return run if run["status"] in statuses else None

    try:
        return wait_for(reached, timeout, f"run {run_id} to reach {sorted(statuses)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; run is now {show(dagd, run_id)}\n{dagd.log()}") from None


def logs(dagd: DagdProcess, run_id: str) -> str:
    result = dagd.ctl("runs", "logs", run_id)
    assert result.code == 0, f"runs logs {run_id} exited {result.code}: {result.stderr}"
    return result.stdout


def wait_log(dagd: DagdProcess, run_id: str, pattern: str, timeout: float = 20) -> re.Match[str]:
    return wait_for(
        lambda: re.search(pattern, logs(dagd, run_id)), timeout, f"log line {pattern!r} of {run_id}"
    )


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie that nobody reaped yet counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_rfc3339(run: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(run[key], str) and RFC3339_UTC.match(run[key]), f"{key} is not RFC 3339 UTC: {run}"


def start_sleeper_with_child(dagd: DagdProcess) -> tuple[str, int, int]:
    """A running ``sleeper`` run that has started a child process: (run id, worker pid, child pid)."""
    run_id = submit(dagd, "sleeper", "--config", '{"seconds": 60, "child": true}')["run_id"]
    started = wait_status(dagd, run_id, {"STARTED"})
    child_pid = int(wait_log(dagd, run_id, r"child pid (\d+)").group(1))
    worker_pid = started["worker_pid"]
    assert worker_pid and not gone(worker_pid) and not gone(child_pid)
    return run_id, worker_pid, child_pid


# -- submitting and inspecting runs ------------------------------------------------------------


@pytest.mark.timeout(90)
def test_hello_run_succeeds_with_logs_and_spec_json(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    dagd.start("-f", str(defs_file))
    submitted = submit(dagd, "hello")
    assert submitted["job_name"] == "hello"
    assert submitted["status"] in {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "SUCCESS"}
    assert submitted["tags"] == {} and submitted["priority"] == 0
    assert_rfc3339(submitted, "created_at")

    run = wait_status(dagd, submitted["run_id"], FINISHED)
    assert run["status"] == "SUCCESS", run
    assert_rfc3339(run, "created_at", "started_at", "ended_at")
    assert run["created_at"] <= run["started_at"] <= run["ended_at"]
    assert [e["status"] for e in run["events"] if e["status"]][-1] == "SUCCESS"

    text = logs(dagd, run["run_id"])
    assert f"hello from the test job {run['run_id']}" in text
    assert "printed to stdout" in text

    second = submit(dagd, "hello")
    listed = dagd.ctl("runs", "list", "--json")
    assert listed.code == 0, listed.stderr
    runs = listed.json()
    assert [r["run_id"] for r in runs] == [second["run_id"], run["run_id"]], "runs list is not newest first"
    for item in runs:
        assert RUN_KEYS <= set(item)
        assert_rfc3339(item, "created_at")
    wait_status(dagd, second["run_id"], {"SUCCESS"})


@pytest.mark.timeout(90)
def test_failing_job_ends_failure_with_its_error(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    dagd.start("-f", str(defs_file))
    run_id = submit(dagd, "fails")["run_id"]
    run = wait_status(dagd, run_id, FINISHED)
    assert run["status"] == "FAILURE", run
    assert "the job failed on purpose" in run["error"]
    assert_rfc3339(run, "ended_at")

    human = dagd.ctl("runs", "show", run_id)
    assert human.code == 0, human.stderr
    assert "FAILURE" in human.stdout
    assert "the job failed on purpose" in human.stdout


@pytest.mark.timeout(90)
def test_priority_tags_and_config_reach_the_run(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    dagd.start("-f", str(defs_file))

    tagged = submit(dagd, "hello", "--priority", "7", "--tag", "k=v", "--tag", "team=data")
    assert tagged["priority"] == 7
    assert tagged["tags"]["k"] == "v" and tagged["tags"]["team"] == "data"
    assert tagged["tags"]["dagd/priority"] == "7"
    stored = show(dagd, tagged["run_id"])
    assert stored["priority"] == 7 and stored["tags"]["k"] == "v"

    from_code = submit(dagd, "prioritized")
    assert from_code["priority"] == 3 and from_code["tags"]["dagd/priority"] == "3"
    overridden = submit(dagd, "prioritized", "--priority", "-1")
    assert overridden["priority"] == -1 and overridden["tags"]["dagd/priority"] == "-1"

    configured = submit(dagd, "echo_config", "--config", '{"seconds": 0.1}', "--tag", "k=v")
    assert configured["run_config"] == {"seconds": 0.1}
    assert wait_status(dagd, configured["run_id"], FINISHED)["status"] == "SUCCESS"
    assert "config={'seconds': 0.1}" in logs(dagd, configured["run_id"])

    for run in (tagged, from_code, overridden):
        assert wait_status(dagd, run["run_id"], FINISHED)["status"] == "SUCCESS"


# -- terminating runs --------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_terminate_running_run_kills_worker_and_its_children(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    dagd.start("-f", str(defs_file))
    run_id, worker_pid, child_pid = start_sleeper_with_child(dagd)

    result = dagd.ctl("runs", "terminate", run_id)
    assert result.code == 0, result.stderr
    assert run_id in result.stdout

    run = wait_status(dagd, run_id, FINISHED, timeout=10)
    assert run["status"] == "CANCELED", run
    assert_rfc3339(run, "ended_at")
    wait_for(lambda: gone(worker_pid), 5, f"worker {worker_pid} to exit")
    wait_for(lambda: gone(child_pid), 5, f"the job's child {child_pid} to exit")

    again = dagd.ctl("runs", "terminate", run_id)
    assert again.code == 0, again.stderr
    assert "already CANCELED" in again.stdout


@pytest.mark.timeout(60)
def test_terminate_queued_run_cancels_it_at_once(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    dagd.write_config("run_coordinator: {config: {max_concurrent_runs: 0}}\n")
    dagd.start("-f", str(defs_file))
    run_id = submit(dagd, "hello")["run_id"]
    assert show(dagd, run_id)["status"] == "QUEUED"

    result = dagd.ctl("runs", "terminate", run_id, "--json")
    assert result.code == 0, result.stderr
    answered = result.json()
    assert answered["status"] == "CANCELED" and answered["changed"] is True

    run = show(dagd, run_id)
    assert run["status"] == "CANCELED"
    assert run["worker_pid"] is None and run["started_at"] is None
    assert_rfc3339(run, "ended_at")
    assert [e["status"] for e in run["events"] if e["status"]] == ["QUEUED", "CANCELED"]


@pytest.mark.timeout(60)
def test_default_run_coordinator_never_queues(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    dagd.write_config("run_coordinator: {class: DefaultRunCoordinator}\n")
    dagd.start("-f", str(defs_file))
    submitted = submit(dagd, "hello")
    assert submitted["status"] != "QUEUED"

    run = wait_status(dagd, submitted["run_id"], FINISHED)
    assert run["status"] == "SUCCESS", run
    timeline = [e["status"] for e in run["events"] if e["status"]]
    assert "QUEUED" not in timeline, timeline
    assert timeline[-1] == "SUCCESS"
    assert "hello from the test job" in logs(dagd, run["run_id"])


# -- stopping the supervisor -------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_dev_exits_zero_and_leaves_nothing(
    dagd: DagdProcess, defs_file: pathlib.Path, home: pathlib.Path, sig: signal.Signals
) -> None:
    dagd.start("-f", str(defs_file))
    pids = {dagd.pid, *(d["pid"] for d in dagd.daemons().values())}
    assert len(pids) == 5, f"expected the supervisor and four daemons: {pids}"

    dagd.signal(sig)
    assert dagd.wait_exit(timeout=15) == 0, dagd.log()
    assert_no_leftovers(home)
    assert all(gone(pid) for pid in pids)
    assert not (home / "supervisor.json").exists()

    status = dagctl(home, "daemons", "status")
    assert status.code == 4, (status.code, status.stderr)
    assert "no supervisor is running" in status.stderr


@pytest.mark.timeout(90)
def test_ctrl_c_on_dev_cancels_runs_in_progress(
    dagd: DagdProcess, defs_file: pathlib.Path, home: pathlib.Path
) -> None:
    """Regression: Ctrl-C on ``dagctl dev`` left a running run's worker (and its children) behind."""
    dagd.start("-f", str(defs_file))
    run_id, worker_pid, child_pid = start_sleeper_with_child(dagd)

    dagd.signal(signal.SIGINT)
    assert dagd.wait_exit(timeout=15) == 0, dagd.log()
    assert_no_leftovers(home)
    assert gone(worker_pid) and gone(child_pid)
    assert not processes_for_home(home)

    # The run's record says what happened to it (read by a fresh supervisor on the same home).
    dagd.start("-f", str(defs_file))
    run = show(dagd, run_id)
    assert run["status"] == "CANCELED", run
