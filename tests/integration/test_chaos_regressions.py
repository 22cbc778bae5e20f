"""Regressions the chaos battery found (docs/chaos.md), pinned down at the storage layer, on SQLite
and PostgreSQL. The end-to-end reproductions are in tests/e2e/test_chaos_regressions_e2e.py.
"""

from __future__ import annotations

import pytest

from dagd.runs.model import RunFilter, RunStatus
from dagd.storage import Storage
from dagd.storage.runs import NewRun


def new_run(key: str | None, job_name: str = "job_a") -> NewRun:
    return NewRun(
        job_name=job_name, tags={}, run_config={}, priority=0, status=RunStatus.QUEUED, idempotency_key=key
    )


@pytest.mark.timeout(60)
def test_regression_batch_with_one_idempotency_key_twice_raised_integrity_error(storage: Storage) -> None:
    """The supervisor's group commit hands create_many a batch; a client's retries put one key in it
    twice. That batch was inserted one run at a time without looking for the run the first copy had
    just made: a unique-key violation failed the whole batch. Each copy must get the one run."""
    before = storage.runs.create(new_run("made-earlier"))
    batch = [
        new_run("twice"),
        new_run(None),
        new_run("twice", "job_b"),
        new_run("made-earlier"),
        new_run("once"),
    ]
    created = storage.runs.create_many(batch)

    assert created[0].run_id == created[2].run_id and created[2].job_name == "job_a"
    assert created[3].run_id == before.run_id
    assert len({r.run_id for r in created}) == 4
    assert len(storage.runs.list(RunFilter())) == 4  # made-earlier, twice, the keyless one, once
