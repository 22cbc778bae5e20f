"""The ``run_monitoring`` daemon in-process against real storage, SQLite and PostgreSQL alike.

Runs are written straight into storage in the status under test; their "workers" are real
processes the test starts (``sleep``, each in its own session, as a real worker is), so liveness
checks and signals are real. Each test calls ``RunMonitoringDaemon.run_iteration()`` itself, with
the 1 s confirmation grace for a dead worker waited out between passes.

What must hold: a worker is identified by pid *and* start time, so a pid reused by an unrelated
process reads as a dead worker and that process is never signalled; every timeout and limit ends
its run with the reason; a run that finishes on its own in the meantime is never overwritten; one
run's bad tag never stops the others being monitored; a deadline found in a pass is kept.
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
import yaml
from helpers.procs import wait_for

from dagd.daemons.base import DaemonRunner, StatusPipe
from dagd.daemons.run_monitoring import FINISH_GRACE_SECONDS, RunMonitoringDaemon
from dagd.instance.instance import Instance
from dagd.runs.cancel import force_cancel
from dagd.runs.model import MAX_RUNTIME_TAG, Run, RunStatus
from dagd.storage.attempts import WorkerId
from dagd.storage.runs import NewRun

FAST = {"start_timeout_seconds": 1, "cancel_timeout_seconds": 1, "poll_interval_seconds": 0.2}


# -- an instance on the test's database ----------------------------------------------------------


def storage_section(url: str) -> dict[str, Any]:
    """The ``storage:`` section that points an instance at ``url`` (a fixture's database)."""
    if url.startswith("sqlite:///"):
        db_file = pathlib.Path(url.removeprefix("sqlite:///"))
        assert db_file.name == "dagd.db", url  # the instance names its SQLite file dagd.db
        return {"sqlite": {"base_dir": str(db_file.parent)}}
    return {"postgres": {"url": url}}


MakeDaemon = Callable[..., RunMonitoringDaemon]


@pytest.fixture
def make_daemon(storage_url: str, tmp_path: pathlib.Path) -> Iterator[MakeDaemon]:
    """``make_daemon(**run_monitoring)``: a daemon on the test's database; closed afterwards."""
    made: list[RunMonitoringDaemon] = []

    def make(**monitoring: Any) -> RunMonitoringDaemon:
        home = tmp_path / f"home{len(made)}"
        home.mkdir()
        config = {"storage": storage_section(storage_url), "run_monitoring": {**FAST, **monitoring}}
        (home / "dagd.yaml").write_text(yaml.safe_dump(config))
        daemon = RunMonitoringDaemon(Instance.load(home))
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.close()


@pytest.fixture
def spawn() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """``spawn()``: a live ``sleep 30`` in its own session (its pid is its process group)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def create_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def put_run(
    daemon: RunMonitoringDaemon,
    status: RunStatus,
    pid: int | None = None,
    started_at: float | None = None,
    tags: dict[str, str] | None = None,
) -> Run:
    """A run in ``status``, taken there through the real claim path: dispatched as attempt 1 and,
    if it got further than STARTING, claimed by a "worker" that is process ``pid``."""
    storage = daemon.instance.storage
    run = storage.runs.create(NewRun("job", dict(tags or {}), {}, 0, RunStatus.NOT_STARTED))
    [(run, attempt)] = storage.runs.claim_many([run.run_id], expected=(RunStatus.NOT_STARTED,))
    if status == RunStatus.STARTING:
        return storage.runs.require(run.run_id)
    assert pid is not None
    if started_at is None:
        started_at = create_time(pid)
    worker = WorkerId(name=f"test:{pid}", host=socket.gethostname(), pid=pid, started_at=started_at)
    claim = storage.attempts.claim(run.run_id, attempt.attempt, attempt.dispatch_token, worker)
    assert claim.outcome.value == "CLAIMED", claim
    if status == RunStatus.CANCELING:
        storage.runs.transition(
            run.run_id, RunStatus.CANCELING, expected=(RunStatus.STARTED,), message="terminate"
        )
    return storage.runs.require(run.run_id)


def status_of(daemon: RunMonitoringDaemon, run_id: str) -> RunStatus:
    return daemon.instance.storage.runs.require(run_id).status


def pass_then_status(daemon: RunMonitoringDaemon, run_id: str) -> RunStatus:
    daemon.run_iteration()
    return status_of(daemon, run_id)


def two_passes(daemon: RunMonitoringDaemon) -> None:
    """A pass, the confirmation grace for a worker that looked dead, and the pass that decides."""
    daemon.run_iteration()
    time.sleep(FINISH_GRACE_SECONDS + 0.05)
    daemon.run_iteration()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- dead workers --------------------------------------------------------------------------------


def test_worker_pid_reused_by_an_unrelated_process_counts_as_dead(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    daemon = make_daemon()
    stranger = spawn()
    # The run's worker had this pid once, but started 100 s before the process that has it now.
    run = put_run(daemon, RunStatus.STARTED, stranger.pid, create_time(stranger.pid) - 100)

    daemon.run_iteration()
    assert status_of(daemon, run.run_id) == RunStatus.STARTED, "failed before the confirmation grace"
    time.sleep(FINISH_GRACE_SECONDS + 0.05)
    daemon.run_iteration()

    failed = daemon.instance.storage.runs.require(run.run_id)
    assert failed.status == RunStatus.FAILURE
    assert failed.error and failed.error.startswith("WORKER_DIED") and f"pid {stranger.pid}" in failed.error
    time.sleep(0.2)
    assert alive(stranger), "the process that reused the worker's pid was signalled"


def test_live_worker_is_left_alone(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    daemon = make_daemon()
    worker = spawn()
    run = put_run(daemon, RunStatus.STARTED, worker.pid)

    two_passes(daemon)

    assert status_of(daemon, run.run_id) == RunStatus.STARTED
    assert alive(worker)


def test_run_that_finishes_during_the_grace_keeps_its_own_status(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    run = put_run(daemon, RunStatus.STARTED, dead_pid(), started_at=1.0)
    daemon.run_iteration()  # the worker looks gone: suspect, not failed
    # ...because it just exited after writing its result.
    daemon.instance.storage.runs.transition(run.run_id, RunStatus.SUCCESS, expected=(RunStatus.STARTED,))
    time.sleep(FINISH_GRACE_SECONDS + 0.05)
    daemon.run_iteration()

    assert status_of(daemon, run.run_id) == RunStatus.SUCCESS


def test_worker_death_fails_only_its_own_run(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    daemon = make_daemon()
    live = put_run(daemon, RunStatus.STARTED, spawn().pid)
    dead = put_run(daemon, RunStatus.STARTED, dead_pid(), started_at=1.0)

    two_passes(daemon)

    assert status_of(daemon, dead.run_id) == RunStatus.FAILURE
    assert status_of(daemon, live.run_id) == RunStatus.STARTED


# -- timeouts ------------------------------------------------------------------------------------


def test_start_timeout_fails_the_run_and_a_late_worker_claims_nothing(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(start_timeout_seconds=0.5)
    run = put_run(daemon, RunStatus.STARTING)
    attempt = daemon.instance.storage.attempts.get(run.run_id, 1)
    assert attempt is not None
    daemon.run_iteration()
    assert status_of(daemon, run.run_id) == RunStatus.STARTING

    time.sleep(0.6)
    daemon.run_iteration()

    failed = daemon.instance.storage.runs.require(run.run_id)
    assert failed.status == RunStatus.FAILURE and failed.error and "START_TIMEOUT" in failed.error
    late = WorkerId(name="late:1", host=socket.gethostname(), pid=1, started_at=0.0)
    claim = daemon.instance.storage.attempts.claim(run.run_id, 1, attempt.dispatch_token, late)
    assert claim.outcome.value == "REFUSED" and "ABANDONED" in claim.reason
    assert status_of(daemon, run.run_id) == RunStatus.FAILURE


def test_cancel_timeout_kills_the_worker_group_and_cancels(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    daemon = make_daemon(cancel_timeout_seconds=0.5)
    stubborn = spawn()
    run = put_run(daemon, RunStatus.CANCELING, stubborn.pid)
    daemon.run_iteration()
    assert status_of(daemon, run.run_id) == RunStatus.CANCELING and alive(stubborn)

    time.sleep(0.6)
    daemon.run_iteration()

    assert status_of(daemon, run.run_id) == RunStatus.CANCELED
    events = daemon.instance.storage.runs.events(run.run_id)
    assert events[-1].message == "still running 0.5s after cancel: killed"
    wait_for(lambda: not alive(stubborn), 5, "the worker that ignored the cancel to be killed")


def test_cancel_timeout_never_kills_a_process_that_reused_the_worker_pid(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    """Regression: the CANCELING path killed the recorded pid's process group without checking
    that the pid was still the worker, so an unrelated session leader that got the pid died."""
    daemon = make_daemon(cancel_timeout_seconds=0.5)
    stranger = spawn()
    run = put_run(daemon, RunStatus.CANCELING, stranger.pid, create_time(stranger.pid) - 100)
    time.sleep(0.6)

    daemon.run_iteration()

    assert status_of(daemon, run.run_id) == RunStatus.CANCELED
    time.sleep(0.2)
    assert alive(stranger), "run monitoring killed a process that merely reused the worker's pid"


def test_terminate_never_kills_a_process_that_reused_the_worker_pid(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    """Regression: ``finish_cancel`` (now ``force_cancel``; terminate, max runtime) SIGKILLed the recorded pid's group
    when the worker was gone, even when that pid now belonged to an unrelated session leader."""
    daemon = make_daemon()
    stranger = spawn()
    run = put_run(daemon, RunStatus.CANCELING, stranger.pid, create_time(stranger.pid) - 100)

    force_cancel(daemon.instance, run, "terminated")

    assert status_of(daemon, run.run_id) == RunStatus.CANCELED
    time.sleep(0.2)
    assert alive(stranger), "terminate killed a process that merely reused the worker's pid"


# -- max runtime ---------------------------------------------------------------------------------


def test_max_runtime_terminates_the_run_with_the_reason(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    daemon = make_daemon()
    worker = spawn()  # sleep dies of the SIGTERM: the "job" stops when asked
    run = put_run(daemon, RunStatus.STARTED, worker.pid, tags={MAX_RUNTIME_TAG: "0.5"})
    daemon.run_iteration()
    assert status_of(daemon, run.run_id) == RunStatus.STARTED

    time.sleep(0.6)
    daemon.run_iteration()

    assert status_of(daemon, run.run_id) in (RunStatus.CANCELING, RunStatus.CANCELED)
    reasons = [e.message for e in daemon.instance.storage.runs.events(run.run_id)]
    assert any(m.startswith("MAX_RUNTIME:") and "limit of 0.5s" in m for m in reasons), reasons
    # The launcher SIGTERMed the worker; once it is gone, the next passes find it so: CANCELED.
    wait_for(lambda: not alive(worker), 5, "the worker to stop")
    wait_for(lambda: pass_then_status(daemon, run.run_id) == RunStatus.CANCELED, 10, "the run to be CANCELED")


@pytest.mark.parametrize("raw", ["nan", "inf", "1e12", "abc", "-3"])
def test_unusable_max_runtime_tag_never_stops_monitoring_of_other_runs(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]], raw: str
) -> None:
    """Regression: ``nan``, ``inf`` or a limit past the year 9999 made computing the run's deadline
    raise, which failed every pass: no other run was monitored while that run was in progress."""
    daemon = make_daemon()
    tagged = put_run(daemon, RunStatus.STARTED, spawn().pid, tags={MAX_RUNTIME_TAG: raw})
    dead = put_run(daemon, RunStatus.STARTED, dead_pid(), started_at=1.0)

    two_passes(daemon)

    assert status_of(daemon, dead.run_id) == RunStatus.FAILURE
    assert status_of(daemon, tagged.run_id) == RunStatus.STARTED


def test_deadline_found_in_a_pass_is_kept_by_the_loop(
    make_daemon: MakeDaemon, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    """Regression: the daemon loop read ``interval_seconds`` *before* each pass, so a deadline that
    pass found (here a 0.5 s max runtime) waited for the next poll (5 s) instead."""
    daemon = make_daemon(poll_interval_seconds=5)
    worker = spawn()
    run = put_run(daemon, RunStatus.STARTED, worker.pid, tags={MAX_RUNTIME_TAG: "0.5"})
    runner = DaemonRunner(daemon, incarnation=1, pipe=StatusPipe(None))
    thread = threading.Thread(target=runner.run, name="run_monitoring", daemon=True)
    began = time.monotonic()
    thread.start()
    try:
        wait_for(lambda: status_of(daemon, run.run_id) != RunStatus.STARTED, 10, "the max runtime to act")
        took = time.monotonic() - began
        wait_for(lambda: status_of(daemon, run.run_id) == RunStatus.CANCELED, 10, "the run to be CANCELED")
    finally:
        runner.stopping.set()
        runner.wake.set()
        thread.join(10)
    assert took < 2.5, f"terminated {took:.2f}s after the loop started (limit 0.5 s, poll 5 s)"
    assert not alive(worker)


# -- run retries (issue #19, item 5) -------------------------------------------------------------


def retrying_daemon(storage_url: str, home: pathlib.Path, max_retries: int) -> RunMonitoringDaemon:
    home.mkdir()
    config = {
        "storage": storage_section(storage_url),
        "run_monitoring": FAST,
        "run_retries": {"enabled": True, "max_retries": max_retries},
    }
    (home / "dagd.yaml").write_text(yaml.safe_dump(config))
    return RunMonitoringDaemon(Instance.load(home))


def failed_run(
    daemon: RunMonitoringDaemon, tags: dict[str, str] | None = None, status: RunStatus = RunStatus.FAILURE
) -> Run:
    runs = daemon.instance.storage.runs
    run = runs.create(
        NewRun("job", {"team": "a", **(tags or {})}, {"x": 1}, 0, RunStatus.QUEUED, code_location="loc")
    )
    done = runs.transition(run.run_id, status, expected=(RunStatus.QUEUED,), error="boom")
    assert done is not None
    return done


def chain(daemon: RunMonitoringDaemon, root: str) -> list[Run]:
    from dagd.runs.model import RunFilter

    return sorted(
        daemon.instance.storage.runs.list(RunFilter(tags={"dagd/root_run_id": root})),
        key=lambda r: int(r.tags["dagd/retry_number"]),
    )


def test_failed_run_is_retried_as_a_linked_new_run_until_the_retries_are_spent(
    storage_url: str, tmp_path: pathlib.Path
) -> None:
    daemon = retrying_daemon(storage_url, tmp_path / "home", max_retries=2)
    try:
        first = failed_run(daemon)
        daemon.run_iteration()
        daemon.run_iteration()  # a pass over the same failure again: still one retry
        [retry] = chain(daemon, first.run_id)
        assert retry.status == RunStatus.QUEUED and retry.job_name == "job" and retry.run_config == {"x": 1}
        assert retry.tags["dagd/parent_run_id"] == first.run_id and retry.tags["dagd/retry_number"] == "1"
        assert retry.tags["team"] == "a" and retry.code_location == "loc"

        runs = daemon.instance.storage.runs
        runs.transition(retry.run_id, RunStatus.FAILURE, expected=(RunStatus.QUEUED,), error="boom again")
        daemon.run_iteration()
        second = chain(daemon, first.run_id)[1]
        assert second.tags["dagd/parent_run_id"] == retry.run_id and second.tags["dagd/retry_number"] == "2"
        runs.transition(second.run_id, RunStatus.FAILURE, expected=(RunStatus.QUEUED,), error="and again")
        daemon.run_iteration()
        assert len(chain(daemon, first.run_id)) == 2, "retried past max_retries"
    finally:
        daemon.close()


def test_canceled_runs_and_runs_tagged_max_retries_0_are_not_retried(
    storage_url: str, tmp_path: pathlib.Path
) -> None:
    daemon = retrying_daemon(storage_url, tmp_path / "home", max_retries=3)
    try:
        canceled = failed_run(daemon, status=RunStatus.CANCELED)
        opted_out = failed_run(daemon, tags={"dagd/max_retries": "0"})
        daemon.run_iteration()
        assert chain(daemon, canceled.run_id) == [] and chain(daemon, opted_out.run_id) == []
    finally:
        daemon.close()
