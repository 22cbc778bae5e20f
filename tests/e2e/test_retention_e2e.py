"""Retention end to end: ``dagctl runs delete`` and ``dagctl runs purge`` against a real supervisor
(finished runs go with their logs; a run in progress is refused with one line and nothing changes),
and the supervisor's automatic purge with ``retention.runs.purge_after_days: 0``."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from helpers.procs import DagdProcess, wait_for

EXIT_BAD_INPUT, EXIT_NOT_FOUND = 2, 5
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def submit(dagd: DagdProcess, job: str, *args: str) -> dict[str, Any]:
    result = dagd.ctl("submit", job, *args, "--json")
    assert result.code == 0, result.stderr
    return result.json()  # type: ignore[no-any-return]


def wait_status(dagd: DagdProcess, run_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = dagd.ctl("runs", "show", run_id, "--json").json()
        return run if run["status"] in statuses else None

    return wait_for(reached, timeout, f"run {run_id} to reach {sorted(statuses)}")


@pytest.mark.timeout(120)
def test_delete_and_purge_remove_finished_runs_and_refuse_runs_in_progress(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    dagd.start("-f", str(defs_file))
    first, second = (submit(dagd, "hello")["run_id"] for _ in range(2))
    sleeper = submit(dagd, "sleeper", "--config", '{"seconds": 60}')["run_id"]
    for run_id in (first, second):
        wait_status(dagd, run_id, {"SUCCESS"})
    wait_status(dagd, sleeper, {"STARTED"})

    refused = dagd.ctl("runs", "delete", first, sleeper)
    assert refused.code == EXIT_BAD_INPUT, refused
    assert refused.stderr.strip().count("\n") == 0
    assert f"run {sleeper} is STARTED: only finished runs can be deleted" in refused.stderr
    assert dagd.ctl("runs", "show", first).code == 0, "a refused delete changed nothing"

    deleted = dagd.ctl("runs", "delete", first)
    assert (deleted.code, deleted.stdout.strip()) == (0, "deleted 1 run(s)"), deleted
    assert dagd.ctl("runs", "show", first).code == EXIT_NOT_FOUND
    assert dagd.ctl("runs", "logs", first).code == EXIT_NOT_FOUND
    unknown = dagd.ctl("runs", "delete", first)
    assert unknown.code == EXIT_NOT_FOUND and f"no run with id '{first}'" in unknown.stderr

    for bad in (["--older-than", "0", "--status", "STARTED"], ["--older-than", "-1"]):
        result = dagd.ctl("runs", "purge", *bad)
        assert result.code == EXIT_BAD_INPUT and result.stderr.strip().count("\n") == 0, (bad, result)
    assert dagd.ctl("runs", "purge", "--older-than", "1").stdout.strip() == (
        "purged 0 run(s) that ended more than 1 day(s) ago"
    )
    purged = dagd.ctl("runs", "purge", "--older-than", "0", "--status", "SUCCESS")
    assert (purged.code, purged.stdout.strip()) == (0, "purged 1 run(s) that ended more than 0 day(s) ago")
    assert dagd.ctl("runs", "show", second).code == EXIT_NOT_FOUND
    listed = dagd.ctl("runs", "list", "--json").json()
    assert [r["run_id"] for r in listed] == [sleeper], "the run in progress stays"


@pytest.mark.timeout(90)
def test_the_supervisor_purges_finished_runs_by_itself(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    dagd.write_config("retention: {runs: {purge_after_days: 0}, purge_interval_seconds: 0.5}\n")
    dagd.start("-f", str(defs_file))
    run_id = submit(dagd, "hello")["run_id"]
    sleeper = submit(dagd, "sleeper", "--config", '{"seconds": 60}')["run_id"]
    wait_for(lambda: dagd.ctl("runs", "show", run_id).code == EXIT_NOT_FOUND, 30, "the finished run purged")
    assert wait_status(dagd, sleeper, {"STARTED"})["status"] not in FINISHED
    assert dagd.ctl("runs", "show", sleeper).code == 0
