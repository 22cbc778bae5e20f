"""Attempts in storage, on SQLite and PostgreSQL: claim, heartbeat, fenced writes, loss, resume,
supersede, and the upgrade of a database whose runs were in progress before attempts existed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from helpers.procs import wait_for

from dagd.runs.attempts import AttemptState, ClaimOutcome
from dagd.runs.model import RunStatus
from dagd.storage import Storage
from dagd.storage.attempts import WorkerId
from dagd.storage.migrate import _alembic_config, upgrade
from dagd.storage.runs import NewRun

HOST = socket.gethostname()


def worker(pid: int) -> WorkerId:
    return WorkerId(name=f"{HOST}:{pid}", host=HOST, pid=pid, started_at=1.0)


@pytest.fixture
def dispatched(storage: Storage) -> Iterator[tuple[str, int, str]]:
    """A run claimed for launch: (run_id, attempt number, dispatch token)."""
    run = storage.runs.create(NewRun("job", {}, {}, 0, RunStatus.QUEUED))
    [(claimed, attempt)] = storage.runs.claim_many([run.run_id], expected=(RunStatus.QUEUED,))
    assert claimed.status == RunStatus.STARTING and claimed.attempt == attempt.attempt == 1
    yield run.run_id, attempt.attempt, attempt.dispatch_token


def test_one_claim_wins_and_a_second_delivery_changes_nothing(
    storage: Storage, dispatched: tuple[str, int, str]
) -> None:
    run_id, number, token = dispatched
    first = storage.attempts.claim(run_id, number, token, worker(101))
    second = storage.attempts.claim(run_id, number, token, worker(102))
    wrong = storage.attempts.claim(run_id, number, "not-the-token", worker(103))

    assert first.outcome == ClaimOutcome.CLAIMED
    assert second.outcome == ClaimOutcome.REFUSED and "CLAIMED" in second.reason
    assert wrong.outcome == ClaimOutcome.REFUSED and "token" in wrong.reason
    run = storage.runs.require(run_id)
    attempt = storage.attempts.get(run_id, number)
    assert run.status == RunStatus.STARTED and run.worker_pid == 101 and run.host == HOST
    assert attempt is not None and attempt.pid == 101 and attempt.heartbeat_at is not None


def test_heartbeat_is_stamped_by_the_database_and_reports_canceling(
    storage: Storage, dispatched: tuple[str, int, str]
) -> None:
    run_id, number, token = dispatched
    storage.attempts.claim(run_id, number, token, worker(101))
    before = storage.attempts.get(run_id, number)
    assert storage.attempts.heartbeat(run_id, number, worker(101).name) == RunStatus.STARTED
    storage.runs.transition(run_id, RunStatus.CANCELING, expected=(RunStatus.STARTED,))
    assert storage.attempts.heartbeat(run_id, number, worker(101).name) == RunStatus.CANCELING
    after = storage.attempts.get(run_id, number)
    assert before is not None and after is not None and after.heartbeat_at > before.heartbeat_at  # type: ignore[operator]
    # Another worker's heartbeat for the same attempt is fenced.
    assert storage.attempts.heartbeat(run_id, number, worker(999).name) is None


def test_a_lost_attempt_can_write_neither_status_nor_logs(
    storage: Storage, dispatched: tuple[str, int, str]
) -> None:
    run_id, number, token = dispatched
    me = worker(101)
    storage.attempts.claim(run_id, number, token, me)
    moved = storage.attempts.next_attempt(
        run_id, number, ending=AttemptState.LOST, only=(AttemptState.CLAIMED,), reason="silent",
        from_status=RunStatus.STARTED, message="resumed", epoch=None, fence=None, dispatcher=None, resume=True,
    )  # fmt: skip
    assert moved is not None
    run, second = moved
    assert run.status == RunStatus.STARTING and run.attempt == second.attempt == 2 and run.resumes == 1

    wrote = storage.runs.append_logs(
        run_id, [(run.created_at, "stdout", "INFO", "late")], attempt=(number, me.name)
    )
    ended = storage.runs.transition(
        run_id, RunStatus.SUCCESS, expected=(RunStatus.STARTED,), attempt=(number, me.name)
    )

    assert wrote is False and ended is None
    assert storage.runs.read_logs(run_id) == []
    assert storage.runs.require(run_id).status == RunStatus.STARTING
    assert storage.attempts.heartbeat(run_id, number, me.name) is None
    # The new attempt is claimable, and its worker's end status lands (and ends its attempt).
    assert (
        storage.attempts.claim(run_id, 2, second.dispatch_token, worker(102)).outcome == ClaimOutcome.CLAIMED
    )
    done = storage.runs.transition(
        run_id, RunStatus.SUCCESS, expected=(RunStatus.STARTED,), attempt=(2, worker(102).name)
    )
    assert done is not None and done.status == RunStatus.SUCCESS
    states = [a.state for a in storage.attempts.of_run(run_id)]
    assert states == [AttemptState.LOST, AttemptState.DONE]


def test_silence_is_rechecked_by_the_database_when_declaring_an_attempt_lost(
    storage: Storage, dispatched: tuple[str, int, str]
) -> None:
    """A verdict of silence taken on a stale read must not win over a heartbeat that landed since."""
    run_id, number, token = dispatched
    storage.attempts.claim(run_id, number, token, worker(101))
    fresh = storage.attempts.end_with_run(
        run_id, number, ending=AttemptState.LOST, only=(AttemptState.CLAIMED,), reason="silent",
        run_to=RunStatus.FAILURE, run_from=(RunStatus.STARTED,), error="WORKER_LOST", silent_for=5,
    )  # fmt: skip
    assert fresh is False and storage.runs.require(run_id).status == RunStatus.STARTED
    time.sleep(0.3)
    stale = storage.attempts.end_with_run(
        run_id, number, ending=AttemptState.LOST, only=(AttemptState.CLAIMED,), reason="silent",
        run_to=RunStatus.FAILURE, run_from=(RunStatus.STARTED,), error="WORKER_LOST", silent_for=0.2,
    )  # fmt: skip
    assert stale is True and storage.runs.require(run_id).status == RunStatus.FAILURE


def test_orphaned_dispatch_is_superseded_and_its_token_dies(
    storage: Storage, dispatched: tuple[str, int, str]
) -> None:
    run_id, number, token = dispatched
    aged = wait_for(lambda: storage.attempts.dispatched_before(0.2), 10, "the dispatch to be 0.2 s old")
    assert [a.run_id for a in aged] == [run_id]
    assert storage.attempts.dispatched_before(60) == []
    moved = storage.attempts.next_attempt(
        run_id, number, ending=AttemptState.ABANDONED, only=(AttemptState.DISPATCHED,), reason="orphaned",
        from_status=RunStatus.STARTING, message="dispatched again", epoch=None, fence=None, dispatcher=None,
    )  # fmt: skip
    assert moved is not None and moved[1].attempt == 2
    late = storage.attempts.claim(run_id, number, token, worker(101))
    assert late.outcome == ClaimOutcome.REFUSED and "ABANDONED" in late.reason
    assert storage.runs.require(run_id).status == RunStatus.STARTING


def test_canceled_before_the_worker_started_ends_run_and_attempt(
    storage: Storage, dispatched: tuple[str, int, str]
) -> None:
    run_id, number, token = dispatched
    storage.runs.transition(run_id, RunStatus.CANCELING, expected=(RunStatus.STARTING,))
    claim = storage.attempts.claim(run_id, number, token, worker(101))
    assert claim.outcome == ClaimOutcome.CANCELED
    assert storage.runs.require(run_id).status == RunStatus.CANCELED
    attempt = storage.attempts.get(run_id, number)
    assert attempt is not None and attempt.state == AttemptState.DONE


def test_upgrade_gives_runs_in_progress_a_claimed_first_attempt(storage: Storage) -> None:
    """Migration 0003 on a database whose runs were in progress when dagd was upgraded."""
    from alembic import command

    with storage.write() as conn:
        for table in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f'DROP TABLE "{table}"'))
    with storage.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0002")
    with storage.write() as conn:
        for run_id, status in (("r-started", "STARTED"), ("r-queued", "QUEUED")):
            conn.execute(
                sa.text(
                    "INSERT INTO runs (run_id, job_name, status, priority, tags, run_config, created_at,"
                    " updated_at, started_at, worker_pid, worker_started_at)"
                    " VALUES (:r, 'job', :s, 0, '{}', '{}', :t, :t, :t, 4242, 99.5)"
                ),
                {"r": run_id, "s": status, "t": "2026-12-01 10:00:00.000000"},
            )

    upgrade(storage.engine)

    started = storage.runs.require("r-started")
    assert started.attempt == 1 and started.launch_failures == 0 and started.resumes == 0
    [attempt] = storage.attempts.of_run("r-started")
    assert attempt.state == AttemptState.CLAIMED and attempt.pid == 4242 and attempt.pid_started_at == 99.5
    assert storage.runs.require("r-queued").attempt == 0 and storage.attempts.of_run("r-queued") == []
