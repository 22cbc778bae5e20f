"""Group commit: every caller gets its own result, batches form under load, and a failed flush
fails exactly its batch (no caller is stranded, later batches go on)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from dagd.storage.batching import GroupCommit

pytestmark = pytest.mark.timeout(60)


def test_concurrent_callers_share_batches_and_each_gets_its_own_result() -> None:
    batches: list[int] = []
    flushing: list[int] = []  # the size of each batch as its flush begins
    gate = threading.Event()

    def flush(items: Sequence[int]) -> list[int]:
        flushing.append(len(items))
        # The first batch waits until every other caller has queued behind it. Bounded by the
        # deadline below, not shorter: were the gate to open by itself before then (20 threads
        # starting on a loaded machine), the test would wait for a queue that already drained.
        gate.wait(45)
        batches.append(len(items))
        return [i * 10 for i in items]

    def waiting() -> int:
        """Callers in the batch being flushed plus those queued behind it. How many the leader
        took before it began to flush (1 to 8) depends on how fast the threads started."""
        return (flushing[0] if flushing else 0) + commit._queue.qsize()

    commit = GroupCommit(flush, max_batch=8)
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(commit.submit, i) for i in range(20)]
        deadline = time.monotonic() + 40
        while waiting() < 20:  # one batch being flushed, the rest queued
            assert time.monotonic() < deadline, f"only {waiting()} of 20 callers flushing or queued in 40 s"
            threading.Event().wait(0.005)
        gate.set()
        results = [f.result(timeout=10) for f in futures]

    assert results == [i * 10 for i in range(20)]
    assert sum(batches) == 20
    assert max(batches) == 8  # the queue drained in full batches
    assert len(batches) < 20


def test_a_failed_flush_fails_its_batch_only_and_the_lead_moves_on() -> None:
    calls = 0
    gate = threading.Event()

    def flush(items: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            gate.wait(5)
            raise RuntimeError("disk full")
        return [s.upper() for s in items]

    commit = GroupCommit(flush)
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(commit.submit, "a")
        while calls == 0:
            threading.Event().wait(0.005)
        later = [pool.submit(commit.submit, s) for s in "bcd"]
        while commit._queue.qsize() < 3:
            threading.Event().wait(0.005)
        gate.set()
        with pytest.raises(RuntimeError, match="disk full"):
            first.result(timeout=10)
        assert [f.result(timeout=10) for f in later] == ["B", "C", "D"]
    assert commit.submit("e") == "E"


def test_a_flush_returning_the_wrong_count_fails_the_batch_instead_of_stranding_callers() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        commit.submit(1)
    with pytest.raises(RuntimeError):  # the committer survived: the next caller gets an answer too
        commit.submit(2)
    commit.close()
