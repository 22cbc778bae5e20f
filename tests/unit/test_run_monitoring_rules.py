"""Run monitoring's rules as pure functions: :func:`check_run`, :func:`next_deadline`,
:func:`max_runtime`, over hand-built runs and an explicit ``now``.

No processes and no database: whether the worker is alive is an argument, and so is the number of
resumes already made.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from dagd.daemons.run_monitoring import (
    CANCEL_TIMEOUT,
    MAX_RUNTIME,
    START_TIMEOUT,
    WORKER_DIED,
    Verdict,
    check_run,
    max_runtime,
    next_deadline,
)
from dagd.instance.config import RunMonitoringConfig
from dagd.runs.model import MAX_RUNTIME_TAG, RESUMABLE_TAG, Run, RunStatus
from dagd.timefmt import utcnow

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
CONFIG = RunMonitoringConfig(
    start_timeout_seconds=10, cancel_timeout_seconds=20, poll_interval_seconds=5, max_resume_run_attempts=2
)


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
    )
    return replace(run, **fields)  # type: ignore[arg-type]


def check(
    run: Run, now: float, alive: bool | None = True, attempts: int = 0, config: RunMonitoringConfig = CONFIG
) -> Verdict | None:
    """``check_run`` at ``now`` seconds after T0."""
    return check_run(run, at(now), config, alive, attempts)


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
    assert verdict is not None and verdict.action == "fail" and verdict.reason == START_TIMEOUT
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
    assert verdict is not None and verdict.action == "cancel_kill" and verdict.reason == CANCEL_TIMEOUT
    assert "20s after cancel" in verdict.message


def test_canceling_run_is_not_failed_for_a_dead_worker() -> None:
    # A dead worker is what canceling is for: it waits for the timeout, and then is CANCELED.
    assert check(make_run(RunStatus.CANCELING), 1, alive=False) is None


# -- STARTED: dead worker, resume ----------------------------------------------------------------


def test_dead_worker_fails_the_run_naming_its_pid() -> None:
    verdict = check(make_run(RunStatus.STARTED), 1, alive=False)
    assert verdict is not None and verdict.action == "fail" and verdict.reason == WORKER_DIED
    assert verdict.message.startswith("WORKER_DIED") and "pid 4242" in verdict.message


@pytest.mark.parametrize("alive", [True, None])
def test_live_or_unknown_worker_is_left_alone(alive: bool | None) -> None:
    assert check(make_run(RunStatus.STARTED), 3600, alive=alive) is None


def test_resumable_run_is_resumed_while_attempts_remain_then_fails() -> None:
    run = make_run(RunStatus.STARTED, {RESUMABLE_TAG: "true"})
    first = check(run, 1, alive=False, attempts=0)
    assert first is not None and first.action == "resume" and first.reason == WORKER_DIED
    assert first.message == "worker died; resuming (attempt 1)"
    second = check(run, 1, alive=False, attempts=1)
    assert second is not None and second.message == "worker died; resuming (attempt 2)"
    spent = check(run, 1, alive=False, attempts=2)
    assert spent is not None and spent.action == "fail" and spent.reason == WORKER_DIED


def test_run_not_marked_resumable_is_never_resumed() -> None:
    for tags in ({}, {RESUMABLE_TAG: "false"}):
        verdict = check(make_run(RunStatus.STARTED, tags), 1, alive=False)
        assert verdict is not None and verdict.action == "fail"


def test_resume_needs_attempts_configured() -> None:
    no_resume = CONFIG.model_copy(update={"max_resume_run_attempts": 0})
    verdict = check(make_run(RunStatus.STARTED, {RESUMABLE_TAG: "true"}), 1, alive=False, config=no_resume)
    assert verdict is not None and verdict.action == "fail"


# -- STARTED: max runtime ------------------------------------------------------------------------


def test_run_past_its_max_runtime_is_terminated_with_why() -> None:
    run = make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "2"})
    assert check(run, 1.9) is None
    verdict = check(run, 2.5)
    assert verdict is not None and verdict.action == "terminate" and verdict.reason == MAX_RUNTIME
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
    assert next_deadline(make_run(status, {MAX_RUNTIME_TAG: "1"}), CONFIG) is None


# -- next_deadline -------------------------------------------------------------------------------


def test_next_deadline_of_a_canceling_run_is_its_cancel_timeout() -> None:
    assert next_deadline(make_run(RunStatus.CANCELING), CONFIG) == at(20)


def test_next_deadline_of_a_started_run_is_its_max_runtime() -> None:
    assert next_deadline(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "2"}), CONFIG) == at(2)


def test_started_run_without_a_limit_has_no_deadline() -> None:
    assert next_deadline(make_run(RunStatus.STARTED), CONFIG) is None
    assert next_deadline(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: "abc"}), CONFIG) is None


@pytest.mark.parametrize("raw", ["1e12", "1e300"])
def test_limit_beyond_any_date_has_no_deadline_rather_than_an_error(raw: str) -> None:
    assert next_deadline(make_run(RunStatus.STARTED, {MAX_RUNTIME_TAG: raw}), CONFIG) is None


def test_next_deadline_of_a_starting_run_is_soon_and_never_after_its_start_timeout() -> None:
    # Looked at again within a second: its worker may report in and start a max runtime clock.
    before = utcnow()
    deadline = next_deadline(make_run(RunStatus.STARTING, updated_at=before), CONFIG)
    assert deadline is not None and before < deadline <= utcnow() + timedelta(seconds=1)
    # Stuck since long ago: the start timeout has passed, so the deadline is that (look at once).
    stuck_since = datetime(2020, 1, 1, tzinfo=timezone.utc)
    stuck = make_run(RunStatus.STARTING, updated_at=stuck_since)
    assert next_deadline(stuck, CONFIG) == stuck_since + timedelta(seconds=10)
