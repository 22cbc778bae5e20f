"""Group commit: concurrent writers of new runs share one transaction.

Each caller hands its item to a single committer thread and blocks until the transaction that
holds it has committed, so "acknowledged" still means "durable". Under load, one BEGIN/COMMIT
and one compiled statement serve a whole batch; with a single caller the cost is one thread hop.

A caller waits on a bare lock rather than a ``concurrent.futures.Future``: the committer releases
it once the result is in place. This is the cheapest hand-off CPython has, and at thousands of
submissions a second the hand-offs are a large part of the supervisor's CPU.

Leader/follower (the first waiting caller commits the batch in its own thread, saving the hop to
a committer thread) was tried and measured: with 8 gRPC clients the batches shrank to single
items and the supervisor's CPU per submission rose by about a tenth, so the committer stays.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

MAX_BATCH = 256


class _Slot(Generic[Out]):
    """One caller's place in a batch: a held lock the committer releases when the outcome is set."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.result: Out | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[In, Out]):
    def __init__(self, flush: Callable[[Sequence[In]], list[Out]], max_batch: int = MAX_BATCH) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[In, _Slot[Out]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, item: In) -> Out:
        slot: _Slot[Out] = _Slot()
        self._queue.put((item, slot))
        slot.done.acquire()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            try:
                results = self._flush([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"group commit: {len(results)} results for {len(batch)} items")
            except BaseException as exc:  # every waiter learns of the failure; nothing is acknowledged
                for _, slot in batch:
                    slot.error = exc
                    slot.done.release()
                continue
            for (_, slot), result in zip(batch, results, strict=True):
                slot.result = result
                slot.done.release()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
