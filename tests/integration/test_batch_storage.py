"""RunStore.create_all (issue #20's batch submission) on both databases: all or none, keys per run."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from dagd.runs.model import RunFilter, RunStatus
from dagd.storage import Storage
from dagd.storage.runs import NewRun
from dagd.storage.sql import ConstraintViolation


def new(key: str | None = None, **tags: str) -> NewRun:
    return NewRun(
        job_name="j", tags=dict(tags), run_config={}, priority=0, status=RunStatus.QUEUED, idempotency_key=key
    )


def count(storage: Storage, **tags: str) -> int:
    return len(storage.runs.list(RunFilter(tags=dict(tags), limit=1000)))


def test_create_all_stores_every_run_in_order(storage: Storage) -> None:
    runs = storage.runs.create_all([new(n=str(i)) for i in range(250)])
    assert [r.tags["n"] for r in runs] == [str(i) for i in range(250)]
    assert len({r.run_id for r in runs}) == 250 == count(storage)


@pytest.mark.parametrize("size", [10, 40])  # PostgreSQL: a multi-row INSERT, then COPY
def test_create_all_stores_nothing_when_one_run_is_refused(storage: Storage, size: int) -> None:
    taken = storage.runs.create(new()).run_id
    batch = [new(batch="b") for _ in range(size)]
    batch[7] = replace(batch[7], run_id=taken)  # the database refuses this one
    with pytest.raises(ConstraintViolation):
        storage.runs.create_all(batch)
    assert count(storage, batch="b") == 0
    assert len(storage.runs.create_all(batch[8:])) == size - 8  # the connection is fine after


def test_create_all_honours_keys_stored_before_and_repeated_in_the_batch(storage: Storage) -> None:
    earlier = storage.runs.create(new("k0"))
    runs = storage.runs.create_all([new("k0"), new("k1"), new("k1"), new(None), new("k2")])
    assert runs[0].run_id == earlier.run_id
    assert runs[1].run_id == runs[2].run_id
    assert len({r.run_id for r in runs}) == 4 and count(storage) == 4


def test_concurrent_batches_sharing_keys_make_one_run_per_key(storage: Storage) -> None:
    """Two batches racing with the same keys: the loser's insert clashes, is tried again from the
    lookup, and both answer the same runs (no error, no duplicate)."""
    keys = [f"k{i}" for i in range(50)]
    results: list[Any] = [None, None]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def submit(slot: int) -> None:
        try:
            start.wait()
            results[slot] = [r.run_id for r in storage.runs.create_all([new(k) for k in keys])]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert results[0] == results[1] and len(set(results[0])) == 50 == count(storage)
