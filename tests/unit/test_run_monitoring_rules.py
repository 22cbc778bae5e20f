"""Run monitoring's rules as pure functions: :func:`check_run`, :func:`next_deadline`,
:func:`max_runtime`, over hand-built runs, attempts and an explicit ``now`` (the database's clock).

No processes and no database: what the launcher says of the worker is an argument, and the number
of resumes already made is a field of the run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from dagd.instance.config import RunMonitoringConfig
from dagd.runs.attempts import Attempt, AttemptState, WorkerHealth
from dagd.runs.model import MAX_RUNTIME_TAG, RESUMABLE_TAG, Run, RunStatus
from dagd.runs.monitoring import Action, Reason, Verdict, check_run, max_runtime, next_deadline
from dagd.timefmt import utcnow

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
CONFIG = RunMonitoringConfig(
    start_timeout_seconds=10,
    cancel_timeout_seconds=20,
    poll_interval_seconds=5,
    max_resume_run_attempts=2,
    worker_heartbeat_timeout_seconds=8,
)
START_TIMEOUT, CANCEL_TIMEOUT, WORKER_DIED, WORKER_LOST, MAX_RUNTIME = (
    Reason.START_TIMEOUT, Reason.CANCEL_TIMEOUT, Reason.WORKER_DIED, Reason.WORKER_LOST, Reason.MAX_RUNTIME,
)  # fmt: skip


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_run(status: RunStatus, tags: dict[str, str] | None = None, **fields: object) -> Run:
    """A run that entered ``status`` at T0 (started at T0 too, if it got that far)."""
    started = T0 if status in (RunStatus.STARTED, RunStatus.CANCELING) else None
    run = Run(
        run_id="r1",
        job_name="job",
        status=status,
        tags=dict(tags or {}),
        run_config={},
        priority=0,
        created_at=T0 - timedelta(seconds=1),
        updated_at=T0,
        started_at=started,
        worker_pid=4242 if started else None,
        worker_started_at=1000.0 if started else None,
        attempt=1,
        host="h1" if started else None,
    )
    return replace(run, **fields)  # type: ignore[arg-type]


def make_attempt(run: Run, heartbeat: float = 0.0) -> Attempt:
    """The run's attempt 1, dispatched at T0, claimed (if the run started) with a heartbeat at
    ``heartbeat`` seconds after T0."""
    claimed = run.status in (RunStatus.STARTED, RunStatus.CANCELING)
    return Attempt(
        run_id=run.run_id,
        attempt=1,
        state=AttemptState.CLAIMED if claimed else AttemptState.DISPATCHED,
        dispatch_token="t",
        dispatched_at=run.updated_at or run.created_at,
        host="h1" if claimed else None,
        pid=4242 if claimed else None,
        heartbeat_at=at(heartbeat) if claimed else None,
    )


_HEALTH = {True: WorkerHealth.ALIVE, False: WorkerHealth.DEAD, None: WorkerHealth.UNKNOWN}


def check(
    run: Run,
    now: float,
    alive: bool | None = True,
    resumes: int = 0,
    config: RunMonitoringConfig = CONFIG,
    heartbeat: float | None = None,
    judge_silence: bool = True,
) -> Verdict | None:
    """``check_run`` at ``now`` seconds after T0; the worker's last heartbeat was at ``heartbeat``
    (default: just now)."""
    run = replace(run, resumes=resumes)
    attempt = make_attempt(run, now if heartbeat is None else heartbeat)
    return check_run(run, attempt, at(now), config, _HEALTH[alive], judge_silence=judge_silence)


# -- max_runtime ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("2", 2.0), ("0.5", 0.5), (" 30 ", 30.0), ("1e3", 1000.0)])
def test_max_runtime_reads_seconds_from_the_tag(raw: str, expected: float) -> None:
    assert max_runtime(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: raw}), 0) == (expected, None)


def test_max_runtime_without_a_tag_is_the_instance_default_or_none() -> None:
    run = make_run(RunStatus.STARTED)
    assert max_runtime(run, 0) == (None, None)
    assert max_runtime(run, 60) == (60, None)


def test_max_runtime_tag_beats_the_instance_default() -> None:
    assert max_runtime(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "5"}), 60) == (5.0, None)


@pytest.mark.parametrize("raw", ["abc", "", "0", "-1", "nan", "inf", "-inf", "2s"])
def test_invalid_max_runtime_tag_is_ignored_with_a_warning_naming_it(raw: str) -> None:
    run = make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: raw})
    limit, warning = max_runtime(run, 0)
    assert limit is None
    assert warning is not None and "r1" in warning and repr(raw) in warning and MAX_RUNTIME_TAG in warning
    # An invalid tag falls back to the instance-wide limit, not to "no limit".
    assert max_runtime(run, 60)[0] == 60


# -- STARTING / NOT_STARTED: start timeout ---------------------------------------------------------


@pytest.mark.parametrize("status", [RunStatus.STARTING, RunStatus.NOT_STARTED])
def test_run_not_started_within_the_start_timeout_fails(status: RunStatus) -> None:
    run = make_run(status)
    assert check(run, 9.9, alive=None) is None
    assert check(run, 10.0, alive=None) is None  # "past" the timeout, not at it
    verdict = check(run, 10.1, alive=None)
    assert verdict is not None and verdict.action == Action.FAIL and verdict.reason == START_TIMEOUT
    assert verdict.message.startswith("START_TIMEOUT") and "10s" in verdict.message


def test_start_timeout_counts_from_the_last_status_change_not_creation() -> None:
    run = make_run(RunStatus.STARTING, created_at=T0 - timedelta(hours=1))
    assert check(run, 5, alive=None) is None


def test_start_timeout_counts_from_creation_when_never_updated() -> None:
    run = make_run(RunStatus.STARTING, updated_at=None, created_at=T0)
    assert check(run, 10.1, alive=None) is not None


# -- CANCELING: cancel timeout ---------------------------------------------------------------------


def test_run_still_canceling_after_the_cancel_timeout_is_killed() -> None:
    run = make_run(RunStatus.CANCELING)
    assert check(run, 19.9) is None
    verdict = check(run, 20.1)
    assert verdict is not None and verdict.action == Action.KILL_CANCELED and verdict.reason == CANCEL_TIMEOUT
    assert "20s after cancel" in verdict.message


def test_canceling_run_whose_worker_is_gone_is_canceled_at_once() -> None:
    # Nothing is left to stop: no need to wait for the cancel timeout.
    verdict = check(make_run(RunStatus.CANCELING), 1, alive=False)
    assert verdict is not None and verdict.action == Action.KILL_CANCELED


# -- STARTED: dead worker, resume ----------------------------------------------------------------


def test_dead_worker_fails_the_run_naming_its_pid() -> None:
    verdict = check(make_run(RunStatus.STARTED), 1, alive=False)
    assert verdict is not None and verdict.action == Action.FAIL and verdict.reason == WORKER_DIED
    assert verdict.message.startswith("WORKER_DIED") and "pid 4242" in verdict.message


@pytest.mark.parametrize("alive", [True, None])
def test_live_or_unknown_worker_is_left_alone(alive: bool | None) -> None:
    assert check(make_run(RunStatus.STARTED), 3600, alive=alive) is None


def test_resumable_run_is_resumed_while_attempts_remain_then_fails() -> None:
    run = make_run(RunStatus.STARTED, {RESUMABLE_TAG: "true"})
    first = check(run, 1, alive=False, resumes=0)
    assert first is not None and first.action == Action.RESUME and first.reason == WORKER_DIED
    assert first.message.endswith("resuming as attempt 2 (resume 1)")
    second = check(run, 1, alive=False, resumes=1)
    assert second is not None and second.message.endswith("(resume 2)")
    spent = check(run, 1, alive=False, resumes=2)
    assert spent is not None and spent.action == Action.FAIL and spent.reason == WORKER_DIED


def test_run_not_marked_resumable_is_never_resumed() -> None:
    for tags in ({}, {RESUMABLE_TAG: "false"}):
        verdict = check(make_run(RunStatus.STARTED, tags), 1, alive=False)
        assert verdict is not None and verdict.action == Action.FAIL


def test_resume_needs_attempts_configured() -> None:
    no_resume = CONFIG.model_copy(update={"max_resume_run_attempts": 0})
    verdict = check(make_run(RunStatus.STARTED, {RESUMABLE_TAG: "true"}), 1, alive=False, config=no_resume)
    assert verdict is not None and verdict.action == Action.FAIL


# -- STARTED: max runtime ------------------------------------------------------------------------


def test_run_past_its_max_runtime_is_terminated_with_why() -> None:
    run = make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "2"})
    assert check(run, 1.9) is None
    verdict = check(run, 2.5)
    assert verdict is not None and verdict.action == Action.TERMINATE and verdict.reason == MAX_RUNTIME
    assert verdict.message == "MAX_RUNTIME: ran 2.5s, over its limit of 2s"


def test_max_runtime_counts_from_the_start_not_the_submission() -> None:
    run = make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "2"}, created_at=T0 - timedelta(hours=1))
    assert check(run, 1) is None


def test_instance_wide_max_runtime_applies_to_untagged_runs() -> None:
    limited = CONFIG.model_copy(update={"max_runtime_seconds": 30})
    verdict = check(make_run(RunStatus.STARTED), 31, config=limited)
    assert verdict is not None and verdict.reason == MAX_RUNTIME


def test_dead_worker_wins_over_max_runtime() -> None:
    verdict = check(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "2"}), 60, alive=False)
    assert verdict is not None and verdict.reason == WORKER_DIED


@pytest.mark.parametrize("raw", ["abc", "nan", "inf"])
def test_invalid_max_runtime_never_terminates(raw: str) -> None:
    assert check(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: raw}), 10**6) is None


# -- finished runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", [RunStatus.QUEUED, RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED]
)
def test_runs_not_in_progress_are_never_touched(status: RunStatus) -> None:
    assert check(make_run(status, {MAX_RUNTIME_TAG: "1"}), 10**6, alive=False) is None
    run = make_run(status, {MAX_RUNTIME_TAG: "1"})
    assert next_deadline(run, make_attempt(run), at(0), CONFIG) is None


# -- next_deadline -------------------------------------------------------------------------------


def deadline_of(run: Run) -> datetime | None:
    return next_deadline(run, make_attempt(run), at(0), CONFIG)


def test_next_deadline_of_a_canceling_run_is_its_cancel_timeout() -> None:
    assert deadline_of(make_run(RunStatus.CANCELING)) == at(20)


def test_next_deadline_of_a_started_run_is_its_max_runtime_or_its_heartbeat_timeout() -> None:
    assert deadline_of(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "2"})) == at(2)
    assert deadline_of(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "20"})) == at(8)


def test_started_run_without_a_limit_is_looked_at_when_its_heartbeat_would_be_stale() -> None:
    assert deadline_of(make_run(RunStatus.STARTED)) == at(8)
    assert deadline_of(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "abc"})) == at(8)


@pytest.mark.parametrize("raw", ["1e12", "1e300"])
def test_limit_beyond_any_date_has_no_deadline_rather_than_an_error(raw: str) -> None:
    assert deadline_of(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: raw})) == at(8)


def test_next_deadline_of_a_starting_run_is_soon_and_never_after_its_start_timeout() -> None:
    # Looked at again within a second: its worker may report in and start a max runtime clock.
    before = utcnow()
    starting = make_run(RunStatus.STARTING, updated_at=before)
    deadline = next_deadline(starting, make_attempt(starting), before, CONFIG)
    assert deadline is not None and before < deadline <= before + timedelta(seconds=1)
    # Stuck since long ago: the start timeout has passed, so the deadline is that (look at once).
    stuck_since = datetime(2020, 1, 1, tzinfo=timezone.utc)
    stuck = make_run(RunStatus.STARTING, updated_at=stuck_since)
    assert next_deadline(stuck, make_attempt(stuck), before, CONFIG) == stuck_since + timedelta(seconds=10)


# -- STARTED: a silent worker (killed, frozen or cut off), judged on the database's clock -----------


def test_worker_silent_past_the_heartbeat_timeout_is_lost() -> None:
    run = make_run(RunStatus.STARTED)
    assert check(run, 8.0, heartbeat=0) is None  # at the timeout, not past it
    verdict = check(run, 8.1, heartbeat=0)
    assert verdict is not None and verdict.action == Action.FAIL and verdict.reason == WORKER_LOST
    assert "no heartbeat for 8.1s" in verdict.message and "h1" in verdict.message


def test_silent_resumable_worker_is_resumed_as_a_new_attempt() -> None:
    verdict = check(make_run(RunStatus.STARTED, {RESUMABLE_TAG: "true"}), 9, heartbeat=0)
    assert verdict is not None and verdict.action == Action.RESUME and verdict.reason == WORKER_LOST


def test_silence_is_not_judged_right_after_a_storage_outage() -> None:
    # Regression (issue #14): heartbeats that could not be written during a database outage
    # must not fail the run once monitoring can read again.
    assert check(make_run(RunStatus.STARTED), 60, heartbeat=0, judge_silence=False) is None
    # A worker its launcher reports dead is dead whatever the outage.
    dead = check(make_run(RunStatus.STARTED), 60, alive=False, heartbeat=0, judge_silence=False)
    assert dead is not None and dead.reason == WORKER_DIED


def test_unclaimed_attempt_is_never_judged_by_silence() -> None:
    run = make_run(RunStatus.STARTING)
    assert check_run(run, make_attempt(run), at(9), CONFIG, WorkerHealth.UNKNOWN) is None


# -- launch retry backoff (issue #19, item 3) -------------------------------------------------------


def test_launch_retry_delay_doubles_up_to_the_cap_with_jitter_between_half_and_all() -> None:
    from dagd.runs.launch import launch_retry_delay

    assert [launch_retry_delay(n, 1.0, 60.0, jitter=1.0) for n in (1, 2, 3, 4, 7, 8, 20)] == [
        1.0, 2.0, 4.0, 8.0, 60.0, 60.0, 60.0,
    ]  # fmt: skip
    assert launch_retry_delay(3, 1.0, 60.0, jitter=0.5) == 2.0
    assert launch_retry_delay(3, 1.0, 60.0, jitter=0.0) == 2.0  # never below half
    assert launch_retry_delay(3, 1.0, 60.0, jitter=7.0) == 4.0  # never above all of it
