"""Group commit: concurrent writers of new runs share one transaction.

Each caller hands its item to a single committer thread and blocks until the transaction that
holds it has committed, so "acknowledged" still means "durable". Under load, one BEGIN/COMMIT
and one compiled statement serve a whole batch; with a single caller the cost is one thread hop.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

MAX_BATCH = 256


class GroupCommit(Generic[In, Out]):
    def __init__(self, flush: Callable[[Sequence[In]], list[Out]], max_batch: int = MAX_BATCH) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[In, Future[Out]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, item: In) -> Out:
        future: Future[Out] = Future()
        self._queue.put((item, future))
        return future.result()

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
            except BaseException as exc:  # every waiter learns of the failure; nothing is acknowledged
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
