"""Run monitoring end to end: real supervisor, real run workers, real signals (SPEC §5).

What a user does goes through ``dagctl`` (submit, ``runs show`` for the worker pid, ``runs
terminate``); waiting polls the same gRPC API in-process, so a status change is seen within
~50 ms instead of one Python start-up per look. Durations are measured against the run's own
event timestamps (written by whoever changed the status), not against when the test noticed.

The jobs live in ``tests/fixtures/monitoring_defs.py``; the launcher whose worker never reports
in, in ``tests/helpers/launchers_monitoring.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import sqlite3
import time
from datetime import datetime
from typing import Any

import psutil
import pytest
from helpers.procs import DagdProcess, wait_for

from dagd.client.client import Client

TESTS_DIR = pathlib.Path(__file__).resolve().parents[1]
DEFS = TESTS_DIR / "fixtures" / "monitoring_defs.py"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


# -- helpers -------------------------------------------------------------------------------------


def submit(dagd: DagdProcess, job: str, *args: str) -> str:
    result = dagd.ctl("submit", job, *args, "--json")
    assert result.code == 0, f"submit {job} {args} exited {result.code}: {result.stderr}"
    return str(result.json()["run_id"])


def shown(dagd: DagdProcess, run_id: str) -> dict[str, Any]:
    """``dagctl runs show RUN --json``: the run and its events, as a user sees them."""
    result = dagd.ctl("runs", "show", run_id, "--json")
    assert result.code == 0, f"runs show {run_id} exited {result.code}: {result.stderr}"
    return dict(result.json())


def get_run(dagd: DagdProcess, run_id: str) -> dict[str, Any]:
    with Client.for_home(dagd.home) as client:
        run, events = client.get_run(run_id)
    return {**run, "events": events}


def wait_status(dagd: DagdProcess, run_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = get_run(dagd, run_id)
        return run if run["status"] in statuses else None

    try:
        found = wait_for(reached, timeout, f"run {run_id} to reach {sorted(statuses)}")
    except AssertionError as exc:
        run = get_run(dagd, run_id)
        raise AssertionError(f"{exc}; run is now {json.dumps(run, indent=1)}\n{dagd.log()}") from None
    assert found is not None
    return found


def started_worker(dagd: DagdProcess, run_id: str, timeout: float = 20, *, alive: bool = True) -> int:
    """Wait until the run is STARTED; its worker pid as ``dagctl runs show --json`` reports it.

    ``alive=False`` for a run that may end on its own before ``dagctl`` answers (a short max
    runtime on a loaded machine): its worker must have been reported, not still be running.
    """
    wait_status(dagd, run_id, {"STARTED"}, timeout)
    pid = shown(dagd, run_id)["worker_pid"]
    assert isinstance(pid, int) and pid > 0, pid
    assert not alive or not gone(pid), f"worker {pid} of the STARTED run {run_id} is not running"
    return pid


def resumed_worker(dagd: DagdProcess, run_id: str, dead: int, timeout: float = 20) -> int:
    """Wait until the run is STARTED again, in a worker other than ``dead``; that worker's pid."""

    def resumed() -> int | None:
        run = get_run(dagd, run_id)
        return (
            run["worker_pid"]
            if run["status"] == "STARTED" and run["worker_pid"] not in (None, dead)
            else None
        )

    pid = wait_for(resumed, timeout, f"a new worker for run {run_id} (the old one was {dead})")
    assert pid is not None
    return int(pid)


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie that nobody reaped yet counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def at(stamp: str) -> float:
    """An RFC 3339 UTC timestamp from the API as epoch seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def event(run: dict[str, Any], status: str, last: bool = True) -> dict[str, Any]:
    matching = [e for e in run["events"] if e["status"] == status]
    assert matching, f"no {status} event in {run['events']}"
    return matching[-1] if last else matching[0]


def messages(run: dict[str, Any]) -> list[str]:
    return [e["message"] for e in run["events"]]


# -- a dead worker -------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_sigkilled_worker_fails_its_run_within_seconds(dagd: DagdProcess) -> None:
    dagd.start("-f", str(DEFS))  # default run_monitoring settings: poll every 5 s
    run_id = submit(dagd, "sleeper", "--config", '{"seconds": 60}')
    pid = started_worker(dagd, run_id)

    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    run = wait_status(dagd, run_id, FINISHED, timeout=15)

    assert run["status"] == "FAILURE", run
    # Woken by the fork server's exit report, then the 1 s confirmation grace: well under a poll.
    took = at(event(run, "FAILURE")["at"]) - killed_at
    assert took < 8, f"FAILURE {took:.2f}s after the SIGKILL"
    assert "WORKER_DIED" in run["error"] and f"pid {pid}" in run["error"], run["error"]
    assert "worker" in event(run, "FAILURE")["message"] and "gone" in event(run, "FAILURE")["message"]


# -- a worker that ignores SIGTERM ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_worker_ignoring_sigterm_is_killed_by_monitoring_after_the_cancel_timeout(dagd: DagdProcess) -> None:
    """Two paths end a CANCELING run whose worker ignores SIGTERM: the terminate request's own
    SIGKILL after its 5 s grace (``finish_cancel`` in the supervisor), and run monitoring after
    ``cancel_timeout_seconds``. With a 3 s timeout and a 1 s poll (so monitoring sees the CANCELING
    run, and schedules its deadline, well before 5 s) monitoring must be the one that ends it: the
    run is CANCELED before 5 s and run_monitoring's log records the kill.
    """
    dagd.write_config("run_monitoring:\n  cancel_timeout_seconds: 3\n  poll_interval_seconds: 1\n")
    dagd.start("-f", str(DEFS))
    run_id = submit(dagd, "ignores_sigterm", "--config", '{"seconds": 60}')
    pid = started_worker(dagd, run_id)
    wait_for(lambda: "ignoring SIGTERM" in dagd.ctl("runs", "logs", run_id).stdout, 10, "the job's SIG_IGN")

    result = dagd.ctl("runs", "terminate", run_id)
    assert result.code == 0, result.stderr
    assert get_run(dagd, run_id)["status"] == "CANCELING"
    time.sleep(1.5)
    assert not gone(pid), "the worker ignores SIGTERM: it must still be alive 1.5 s after terminate"
    assert get_run(dagd, run_id)["status"] == "CANCELING"

    run = wait_status(dagd, run_id, FINISHED, timeout=10)
    assert run["status"] == "CANCELED", run
    took = at(event(run, "CANCELED")["at"]) - at(event(run, "CANCELING")["at"])
    # Before the terminate's own SIGKILL (5 s) could have fired: monitoring killed it.
    assert 2.9 <= took < 4.9, f"CANCELED {took:.2f}s after CANCELING (timeout 3 s, terminate grace 5 s)"
    monitoring_log = (dagd.home / "logs" / "run_monitoring.log").read_text()
    assert f"run {run_id}: still running 3s after cancel: killed" in monitoring_log, monitoring_log[-2000:]
    # The CANCELED event's message is whichever writer won the compare-and-set: monitoring's
    # reason, or the terminate thread's "worker stopped" when it saw the group die first.
    assert event(run, "CANCELED")["message"] in ("still running 3s after cancel: killed", "worker stopped")
    wait_for(lambda: gone(pid), 3, f"worker {pid} to be gone")


# -- max runtime ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_max_runtime_tag_terminates_a_long_run(dagd: DagdProcess) -> None:
    dagd.start("-f", str(DEFS))  # default poll (5 s): the daemon wakes for the deadline itself
    run_id = submit(dagd, "sleeper", "--config", '{"seconds": 60}', "--tag", "dagd/max_runtime=2")
    # Two seconds after STARTED the worker is meant to go: it may be gone before `runs show` answers.
    pid = started_worker(dagd, run_id, alive=False)

    run = wait_status(dagd, run_id, FINISHED, timeout=20)

    assert run["status"] == "CANCELED", run
    took = at(event(run, "CANCELED")["at"]) - at(event(run, "STARTED")["at"])
    assert 1.5 <= took <= 6, f"CANCELED {took:.2f}s after STARTED with dagd/max_runtime=2"
    reason = event(run, "CANCELING")["message"]
    assert "MAX_RUNTIME" in reason and "limit of 2s" in reason, run["events"]
    wait_for(lambda: gone(pid), 5, f"worker {pid} to be gone")


@pytest.mark.timeout(60)
def test_invalid_max_runtime_tag_is_refused_at_submission_and_ignored_once_in_older_runs(
    dagd: DagdProcess,
) -> None:
    # A fast poll, so the daemon looks at the run several times while it runs.
    dagd.write_config("run_monitoring:\n  poll_interval_seconds: 0.5\n")
    dagd.start("-f", str(DEFS))
    refused = dagd.ctl("submit", "sleeper", "--tag", "dagd/max_runtime=abc")
    assert refused.code == 2 and "dagd/max_runtime" in refused.stderr and "'abc'" in refused.stderr, refused

    # A run stored before submissions were checked: the bad value written straight into storage.
    run_id = submit(dagd, "sleeper", "--config", '{"seconds": 3}', "--tag", "dagd/max_runtime=1000")
    with contextlib.closing(sqlite3.connect(dagd.home / "storage" / "dagd.db")) as db, db:
        (tags,) = db.execute("SELECT tags FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        tags = json.dumps({**json.loads(tags), "dagd/max_runtime": "abc"})
        db.execute("UPDATE runs SET tags = ? WHERE run_id = ?", (tags, run_id))
        db.execute(
            "UPDATE run_tags SET value = 'abc' WHERE run_id = ? AND key = 'dagd/max_runtime'", (run_id,)
        )

    run = wait_status(dagd, run_id, FINISHED, timeout=20)

    assert run["status"] == "SUCCESS", run
    log_text = (dagd.home / "logs" / "run_monitoring.log").read_text()
    warning = f"run {run_id}: ignoring it: tag dagd/max_runtime must be a number of seconds > 0, got 'abc'"
    assert log_text.count(warning) == 1, log_text[-3000:]


# -- start timeout -------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_run_whose_worker_never_reports_fails_with_start_timeout(dagd: DagdProcess) -> None:
    dagd.write_config(
        "run_launcher: {module: helpers.launchers_monitoring, class: SilentLauncher}\n"
        "run_monitoring:\n  start_timeout_seconds: 2\n"
    )
    # The daemons import the launcher: tests/ must be on their path.
    dagd.start("-f", str(DEFS), env={"PYTHONPATH": str(TESTS_DIR)})
    run_id = submit(dagd, "sleeper")
    silent = wait_for(
        lambda: get_run(dagd, run_id)["attempts"][0]["pid"], 10, "the silent worker to be recorded"
    )
    assert not gone(silent) and psutil.Process(silent).name() == "sleep"
    assert get_run(dagd, run_id)["status"] == "STARTING"

    run = wait_status(dagd, run_id, FINISHED, timeout=15)

    assert run["status"] == "FAILURE", run
    assert "START_TIMEOUT" in run["error"], run["error"]
    took = at(event(run, "FAILURE")["at"]) - at(event(run, "STARTING")["at"])
    assert 2 <= took < 8, f"FAILURE {took:.2f}s after STARTING (start timeout 2 s, poll 5 s)"
    wait_for(lambda: gone(silent), 5, f"the silent worker {silent} to be killed")


# -- the supervisor dies, the run does not -------------------------------------------------------


@pytest.mark.timeout(90)
def test_run_survives_a_supervisor_sigkill_and_succeeds(dagd: DagdProcess) -> None:
    # `daemon run`, not `dev`: dev cancels the runs in progress when it stops.
    dagd.start("-f", str(DEFS), command=("daemon", "run"))
    run_id = submit(dagd, "sleeper", "--config", '{"seconds": 15}')
    pid = started_worker(dagd, run_id)

    dagd.signal(signal.SIGKILL)
    dagd.wait_exit(5)
    dagd.start("-f", str(DEFS), command=("daemon", "run"))
    # The worker outlived the restart, so the new run_monitoring daemon had it to look at.
    assert not gone(pid), "the worker ended before the new supervisor was up; the test proves nothing"
    wait_for(lambda: dagd.daemons()["run_monitoring"]["healthy"], 10, "run_monitoring healthy")

    run = wait_status(dagd, run_id, FINISHED, timeout=20)

    assert run["status"] == "SUCCESS", run
    assert run["worker_pid"] == pid
    assert [e["status"] for e in run["events"] if e["kind"] == "status"].count("STARTED") == 1, run["events"]


# -- resume --------------------------------------------------------------------------------------

RESUME_ONCE = "run_monitoring:\n  max_resume_run_attempts: 1\n"


@pytest.mark.timeout(90)
def test_resumable_run_gets_a_new_worker_when_its_worker_dies_and_succeeds(dagd: DagdProcess) -> None:
    dagd.write_config(RESUME_ONCE)
    dagd.start("-f", str(DEFS))
    run_id = submit(dagd, "resumable_sleeper", "--config", '{"seconds": 4}')
    first = started_worker(dagd, run_id)

    os.kill(first, signal.SIGKILL)
    second = resumed_worker(dagd, run_id, first)
    run = wait_status(dagd, run_id, FINISHED, timeout=20)

    assert run["status"] == "SUCCESS", (run["error"], run["events"], run["attempts"])
    assert run["worker_pid"] == second != first
    assert any("resuming as attempt 2 (resume 1)" in m for m in messages(run)), run["events"]
    statuses = [e["status"] for e in run["events"] if e["kind"] == "status"]
    assert statuses.count("STARTED") == 2 and "FAILURE" not in statuses, statuses


@pytest.mark.timeout(90)
def test_resumable_run_fails_when_its_worker_dies_again_after_the_attempts_are_used(
    dagd: DagdProcess,
) -> None:
    dagd.write_config(RESUME_ONCE)
    dagd.start("-f", str(DEFS))
    run_id = submit(dagd, "resumable_sleeper", "--config", '{"seconds": 60}')
    first = started_worker(dagd, run_id)
    os.kill(first, signal.SIGKILL)
    second = resumed_worker(dagd, run_id, first)

    os.kill(second, signal.SIGKILL)
    run = wait_status(dagd, run_id, FINISHED, timeout=20)

    assert run["status"] == "FAILURE", run
    assert "WORKER_DIED" in run["error"] and f"pid {second}" in run["error"], run["error"]
    assert sum("resuming as attempt 2" in m for m in messages(run)) == 1, run["events"]
    assert [a["state"] for a in run["attempts"]] == ["LOST", "LOST"], run["attempts"]
    assert run["attempt"] == 2
    assert not any("attempt 3" in m for m in messages(run)), run["events"]  # resumed once only
