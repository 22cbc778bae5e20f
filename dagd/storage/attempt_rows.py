"""The statement that starts attempts: a DISPATCHED ``run_attempts`` row per run. Shared by the run
store (claiming runs for launch) and the attempt store (resuming a run), which use each other's
rows otherwise; here, below both, so neither imports the other in a circle."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dagd.runs.attempts import Attempt, AttemptState
from dagd.storage.sql import insert_sql

if TYPE_CHECKING:
    from dagd.storage.sql import Sql

_A = AttemptState

_INSERT_ATTEMPT_COLUMNS = (
    "run_id", "attempt", "state", "dispatch_token", "epoch", "dispatcher", "queue",
)  # fmt: skip


def _insert_attempt_sql(now: str) -> str:
    base = insert_sql("run_attempts", _INSERT_ATTEMPT_COLUMNS)
    return base.replace(") VALUES (", ", dispatched_at) VALUES (", 1)[:-1] + f", {now})"


def new_attempts(
    sql: Sql, runs: Sequence[tuple[str, int]], *, epoch: int | None, dispatcher: str | None,
    queue_of: dict[str, str | None] | None = None,
) -> builtins.list[Attempt]:  # fmt: skip
    """Insert a DISPATCHED attempt for each (run_id, attempt number); returns them."""
    if not runs:
        return []
    rows: builtins.list[dict[str, Any]] = [
        {
            "run_id": run_id,
            "attempt": number,
            "state": _A.DISPATCHED.value,
            "dispatch_token": uuid.uuid4().hex,
            "epoch": epoch,
            "dispatcher": dispatcher,
            "queue": (queue_of or {}).get(run_id),
        }
        for run_id, number in runs
    ]
    sql.many(_insert_attempt_sql(sql.now), rows)
    at = sql.db_now()
    return [
        Attempt(
            run_id=r["run_id"],
            attempt=r["attempt"],
            state=_A.DISPATCHED,
            dispatch_token=r["dispatch_token"],
            dispatched_at=at,
            epoch=epoch,
            dispatcher=dispatcher,
            queue=r["queue"],
        )
        for r in rows
    ]
