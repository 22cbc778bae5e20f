"""Attempts' SQL: dispatch, claim, heartbeat, fenced ends, loss, resume, supersede.

Each operation is one transaction over ``run_attempts`` and ``runs`` together (the lifecycle and
its states are described in :mod:`dagd.runs.attempts`). Times that other processes judge
(dispatched, claimed, heartbeat) are the database's clock (``Sql.now``). Every worker-side write
is conditional on the attempt still being the run's current one and still ``CLAIMED`` by that
worker; the attempt row is updated first, so on PostgreSQL it is locked for the rest of the
transaction and a concurrent "lost" verdict waits and then finds it no longer ``CLAIMED``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagd.runs.attempts import Attempt, AttemptState, Claim, ClaimOutcome
from dagd.runs.model import Run, RunStatus
from dagd.storage.attempt_rows import new_attempts
from dagd.storage.sql import Refused, when

if TYPE_CHECKING:
    from dagd.storage.database import Database
    from dagd.storage.sql import Sql

_A = AttemptState


def row_to_attempt(row: Any, prefix: str = "") -> Attempt:
    get = (lambda name: getattr(row, prefix + name)) if prefix else (lambda name: getattr(row, name))
    return Attempt(
        run_id=get("run_id"),
        attempt=get("attempt"),
        state=AttemptState(get("state")),
        dispatch_token=get("dispatch_token"),
        dispatched_at=when(get("dispatched_at")),  # type: ignore[arg-type]
        epoch=get("epoch"),
        dispatcher=get("dispatcher"),
        queue=get("queue"),
        worker=get("worker"),
        host=get("host"),
        pid=get("pid"),
        pid_started_at=get("pid_started_at"),
        claimed_at=when(get("claimed_at")),
        heartbeat_at=when(get("heartbeat_at")),
        ended_at=when(get("ended_at")),
        end_reason=get("end_reason"),
    )


ATTEMPT_COLUMNS = (
    "run_id", "attempt", "state", "dispatch_token", "epoch", "dispatcher", "queue", "worker", "host",
    "pid", "pid_started_at", "dispatched_at", "claimed_at", "heartbeat_at", "ended_at", "end_reason",
)  # fmt: skip
# The current attempt's columns beside a run's, prefixed ``a_`` (runs LEFT JOIN run_attempts a).
JOINED_ATTEMPT = ", ".join(f"a.{c} AS a_{c}" for c in ATTEMPT_COLUMNS)
JOIN_CURRENT = "LEFT JOIN run_attempts a ON a.run_id = r.run_id AND a.attempt = r.current_attempt"


@dataclass(frozen=True)
class WorkerId:
    """Who claimed an attempt: the worker's name (host:pid), host and process."""

    name: str
    host: str
    pid: int
    started_at: float


class AttemptStore:
    def __init__(self, storage: Database) -> None:
        self._storage = storage
        self._tags: dict[str, dict[str, str]] = {}  # in_progress's parsed tags, by their JSON text

    # -- reads ------------------------------------------------------------------------------

    def get(self, run_id: str, attempt: int) -> Attempt | None:
        with self._storage.sql_read() as sql:
            row = sql.record(
                "SELECT * FROM run_attempts WHERE run_id = :run_id AND attempt = :attempt",
                {"run_id": run_id, "attempt": attempt},
            )
        return None if row is None else row_to_attempt(row)

    def of_run(self, run_id: str) -> builtins.list[Attempt]:
        with self._storage.sql_read() as sql:
            rows = sql.records(
                "SELECT * FROM run_attempts WHERE run_id = :run_id ORDER BY attempt", {"run_id": run_id}
            )
        return [row_to_attempt(row) for row in rows]

    def in_progress(
        self, statuses: Sequence[RunStatus]
    ) -> tuple[Any, builtins.list[tuple[Run, Attempt | None]]]:
        """(the database's clock, [(run, its current attempt)]) for runs in ``statuses``, one read.

        Run monitoring's view, read every pass over every run in progress, so only the columns it
        judges by: the runs come without their run config (``{}``), and tag dicts are shared
        between runs with the same tags and between passes (read-only)."""
        from dagd.storage.sql import by_status, in_list

        names, params = in_list("st", [s.value for s in statuses])
        with self._storage.sql_read() as sql:
            now = sql.db_now()
            rows = sql.rows(
                "SELECT r.run_id, r.job_name, r.status, r.tags, r.priority, r.created_at, r.updated_at,"
                " r.started_at, r.seq, r.worker_pid, r.worker_started_at, r.current_attempt, r.worker_host,"
                " r.resumes, r.launch_failures, a.state, a.dispatch_token, a.dispatched_at, a.epoch,"
                " a.dispatcher, a.queue, a.worker, a.host, a.pid, a.pid_started_at, a.claimed_at,"
                f" a.heartbeat_at FROM runs r{by_status(sql.dialect)} {JOIN_CURRENT}"
                f" WHERE r.status IN ({names}) ORDER BY r.seq",
                params,
            )
        known: dict[str, dict[str, str]] = self._tags
        seen: dict[str, dict[str, str]] = {}
        out: builtins.list[tuple[Run, Attempt | None]] = []
        for (
            run_id, job_name, status, tags_text, priority, created_at, updated_at, started_at, seq, worker_pid,
            worker_started_at, number, worker_host, resumes, launch_failures, state, token, dispatched_at,
            epoch, dispatcher, queue, worker, host, pid, pid_started_at, claimed_at, heartbeat_at,
        ) in rows:  # fmt: skip
            tags = seen.get(tags_text)
            if tags is None:
                tags = seen[tags_text] = known.get(tags_text) or json.loads(tags_text)
            run = Run(
                run_id=run_id,
                job_name=job_name,
                status=RunStatus(status),
                tags=tags,
                run_config={},
                priority=priority,
                created_at=when(created_at),  # type: ignore[arg-type]
                updated_at=when(updated_at),
                started_at=when(started_at),
                seq=seq,
                worker_pid=worker_pid,
                worker_started_at=worker_started_at,
                attempt=number,
                host=worker_host,
                resumes=resumes,
                launch_failures=launch_failures,
            )
            attempt = None
            if state is not None:
                attempt = Attempt(
                    run_id=run_id,
                    attempt=number,
                    state=AttemptState(state),
                    dispatch_token=token,
                    dispatched_at=when(dispatched_at),  # type: ignore[arg-type]
                    epoch=epoch,
                    dispatcher=dispatcher,
                    queue=queue,
                    worker=worker,
                    host=host,
                    pid=pid,
                    pid_started_at=pid_started_at,
                    claimed_at=when(claimed_at),
                    heartbeat_at=when(heartbeat_at),
                )
            out.append((run, attempt))
        self._tags = seen
        return now, out

    def dispatched_before(self, seconds: float) -> builtins.list[Attempt]:
        """Current DISPATCHED attempts of STARTING runs older than ``seconds`` (database clock)."""
        with self._storage.sql_read() as sql:
            rows = sql.records(
                "SELECT a.* FROM run_attempts a JOIN runs r ON r.run_id = a.run_id"
                " AND r.current_attempt = a.attempt"
                f" WHERE a.state = :dispatched AND r.status = :starting AND {sql.older_than('a.dispatched_at', 'age')}",
                {"dispatched": _A.DISPATCHED.value, "starting": RunStatus.STARTING.value, "age": seconds},
            )
        return [row_to_attempt(row) for row in rows]

    def record_launches(self, launched: Sequence[tuple[str, int, int, float | None, str | None]]) -> None:
        """Where the launcher started each (run_id, attempt, pid, pid start time, host), while no
        worker has claimed it yet (the claim records the worker's own word)."""
        if not launched:
            return
        with self._storage.sql_write() as sql:
            sql.many(
                "UPDATE run_attempts SET pid = :pid, pid_started_at = :started_at, host = :host"
                " WHERE run_id = :run_id AND attempt = :attempt AND state = :dispatched",
                [
                    {
                        "run_id": r,
                        "attempt": a,
                        "pid": pid,
                        "started_at": at,
                        "host": host,
                        "dispatched": _A.DISPATCHED.value,
                    }
                    for r, a, pid, at, host in launched
                ],
            )

    # -- the worker's side ------------------------------------------------------------------

    def claim(self, run_id: str, attempt: int, token: str, worker: WorkerId) -> Claim:
        """The worker's first write: take the attempt (compare-and-set on its token) and start
        the run, or find that the run was canceled before it started (then end both)."""
        try:
            return self._claim(run_id, attempt, token, worker)
        except Refused as exc:
            return Claim(ClaimOutcome.REFUSED, str(exc))

    def _claim(self, run_id: str, attempt: int, token: str, worker: WorkerId) -> Claim:
        from dagd.storage.runs import insert_event

        params = {
            "run_id": run_id,
            "attempt": attempt,
            "token": token,
            "worker": worker.name,
            "host": worker.host,
            "pid": worker.pid,
            "pid_started_at": worker.started_at,
            "dispatched": _A.DISPATCHED.value,
            "claimed": _A.CLAIMED.value,
            "starting": RunStatus.STARTING.value,
            "started": RunStatus.STARTED.value,
        }
        with self._storage.sql_write() as sql:
            now = sql.now
            taken = sql.execute(
                f"UPDATE run_attempts SET state = :claimed, worker = :worker, host = :host, pid = :pid,"
                f" pid_started_at = :pid_started_at, claimed_at = {now}, heartbeat_at = {now}"
                " WHERE run_id = :run_id AND attempt = :attempt AND dispatch_token = :token"
                " AND state = :dispatched",
                params,
            )
            if taken != 1:
                current = sql.record(
                    "SELECT state, dispatch_token FROM run_attempts WHERE run_id = :run_id AND attempt = :attempt",
                    params,
                )
                if current is None:
                    return Claim(ClaimOutcome.REFUSED, f"run {run_id} has no attempt {attempt}")
                if current.dispatch_token != token:
                    return Claim(
                        ClaimOutcome.REFUSED, f"attempt {attempt} of run {run_id}: wrong dispatch token"
                    )
                return Claim(ClaimOutcome.REFUSED, f"attempt {attempt} of run {run_id} is {current.state}")
            started = sql.execute(
                f"UPDATE runs SET status = :started, started_at = {now}, updated_at = {now}, worker_pid = :pid,"
                " worker_started_at = :pid_started_at, worker_host = :host"
                " WHERE run_id = :run_id AND current_attempt = :attempt AND status = :starting",
                params,
            )
            if started == 1:
                insert_event(
                    sql,
                    run_id,
                    RunStatus.STARTED,
                    f"attempt {attempt}: worker started on {worker.host} (pid {worker.pid})",
                )
                return Claim(ClaimOutcome.CLAIMED)
            status = sql.scalar(
                "SELECT status FROM runs WHERE run_id = :run_id AND current_attempt = :attempt", params
            )
            if status == RunStatus.CANCELING.value:
                sql.execute(
                    f"UPDATE run_attempts SET state = :done, ended_at = {now}, end_reason = 'canceled before start'"
                    " WHERE run_id = :run_id AND attempt = :attempt",
                    {**params, "done": _A.DONE.value},
                )
                sql.execute(
                    f"UPDATE runs SET status = :canceled, updated_at = {now}, ended_at = {now}"
                    " WHERE run_id = :run_id AND status = :canceling",
                    {**params, "canceled": RunStatus.CANCELED.value, "canceling": RunStatus.CANCELING.value},
                )
                insert_event(sql, run_id, RunStatus.CANCELED, "canceled before start")
                return Claim(ClaimOutcome.CANCELED, "the run was canceled before its worker started")
            # The attempt was ours but the run moved on (superseded): undo the claim.
            raise Refused(f"attempt {attempt} of run {run_id}: the run is {status or 'on another attempt'}")

    def heartbeat(self, run_id: str, attempt: int, worker: str) -> RunStatus | None:
        """Stamp the attempt alive (database clock); the run's status, or None if this attempt is
        no longer the run's current, CLAIMED by ``worker``: then its job must stop at once."""
        params = {"run_id": run_id, "attempt": attempt, "worker": worker, "claimed": _A.CLAIMED.value}
        with self._storage.sql_write() as sql:
            if (
                sql.execute(
                    f"UPDATE run_attempts SET heartbeat_at = {sql.now} WHERE run_id = :run_id"
                    " AND attempt = :attempt AND worker = :worker AND state = :claimed",
                    params,
                )
                != 1
            ):
                return None
            status = sql.scalar(
                "SELECT status FROM runs WHERE run_id = :run_id AND current_attempt = :attempt", params
            )
        return None if status is None else RunStatus(status)

    def holds(self, sql: Sql, run_id: str, attempt: int, worker: str) -> bool:
        """Inside a write: lock the attempt row and say whether ``worker`` still holds it."""
        lock = " FOR UPDATE" if sql.dialect == "postgresql" else ""
        state = sql.scalar(
            "SELECT state FROM run_attempts WHERE run_id = :run_id AND attempt = :attempt AND worker = :worker"
            + lock,
            {"run_id": run_id, "attempt": attempt, "worker": worker},
        )
        return state == _A.CLAIMED.value

    # -- monitoring and the queue's side ------------------------------------------------------

    def end(
        self,
        sql: Sql,
        run_id: str,
        attempt: int,
        to: AttemptState,
        reason: str,
        *,
        only: Sequence[AttemptState],
        worker: str | None = None,
    ) -> bool:
        """Inside a write: move an attempt from one of ``only`` to ``to`` (compare-and-set), and
        with ``worker``, only if that worker holds it."""
        from dagd.storage.sql import in_list

        names, params = in_list("from", [s.value for s in only])
        params.update(run_id=run_id, attempt=attempt, to=to.value, reason=reason[:2000], worker=worker)
        held = " AND worker = :worker" if worker is not None else ""
        return (
            sql.execute(
                f"UPDATE run_attempts SET state = :to, ended_at = {sql.now}, end_reason = :reason"
                f" WHERE run_id = :run_id AND attempt = :attempt AND state IN ({names}){held}",
                params,
            )
            == 1
        )

    def next_attempt(
        self,
        run_id: str,
        attempt: int,
        *,
        ending: AttemptState,
        only: Sequence[AttemptState],
        reason: str,
        from_status: RunStatus,
        message: str,
        epoch: int | None,
        fence: tuple[str, int] | None,
        dispatcher: str | None,
        silent_for: float | None = None,
        resume: bool = False,
    ) -> tuple[Run, Attempt] | None:
        """End ``attempt`` (-> ``ending``) and give the run a new DISPATCHED one, moving it from
        ``from_status`` to STARTING; one transaction, fenced by the lease epoch. With
        ``silent_for``, only if the old attempt's heartbeat is still older than that (database
        clock). None if anything moved meanwhile."""
        from dagd.storage.runs import fenced_conditions, insert_event, row_to_run

        try:
            with self._storage.sql_write() as sql:
                if not self._end_checked(sql, run_id, attempt, ending, reason, only, silent_for):
                    return None
                params: dict[str, Any] = {
                    "run_id": run_id,
                    "attempt": attempt,
                    "from": from_status.value,
                    "to": RunStatus.STARTING.value,
                    "claim_epoch": epoch,
                }
                resumes = ", resumes = resumes + 1" if resume else ""
                conditions = " AND ".join(
                    [
                        "run_id = :run_id",
                        "current_attempt = :attempt",
                        "status = :from",
                        *fenced_conditions(fence, params),
                    ]
                )
                row = sql.record(
                    f"UPDATE runs SET status = :to, current_attempt = current_attempt + 1, updated_at = {sql.now},"
                    f" claim_epoch = :claim_epoch{resumes} WHERE {conditions} RETURNING *",
                    params,
                )
                if row is None:
                    raise Refused("the run moved on")
                (new,) = new_attempts(
                    sql, [(run_id, row.current_attempt)], epoch=epoch, dispatcher=dispatcher
                )
                insert_event(sql, run_id, RunStatus.STARTING, f"attempt {row.current_attempt}: {message}")
                return row_to_run(row), new
        except Refused:
            return None

    def end_with_run(
        self,
        run_id: str,
        attempt: int,
        *,
        ending: AttemptState,
        only: Sequence[AttemptState],
        reason: str,
        run_to: RunStatus,
        run_from: Sequence[RunStatus],
        error: str | None = None,
        silent_for: float | None = None,
        hold_seconds: float | None = None,
    ) -> bool:
        """End ``attempt`` and move its run to ``run_to`` (FAILURE, CANCELED, or QUEUED again) in
        one transaction; False if anything moved meanwhile. ``hold_seconds``: a run put back in
        the queue is not launched before that many seconds (database clock)."""
        from dagd.storage.runs import insert_event
        from dagd.storage.sql import in_list

        try:
            with self._storage.sql_write() as sql:
                if not self._end_checked(sql, run_id, attempt, ending, reason, only, silent_for):
                    return False
                names, params = in_list("src", [s.value for s in run_from])
                params.update(run_id=run_id, attempt=attempt, to=run_to.value, error=error, hold=hold_seconds)
                set_error = ", error = :error" if error is not None else ""
                if hold_seconds is not None:
                    set_error += f", launch_not_before = {sql.later('hold')}"
                ended = f", ended_at = {sql.now}" if run_to.is_finished else ""
                changed = sql.execute(
                    f"UPDATE runs SET status = :to, updated_at = {sql.now}{ended}{set_error}"
                    f" WHERE run_id = :run_id AND current_attempt = :attempt AND status IN ({names})",
                    params,
                )
                if changed != 1:
                    raise Refused("the run moved on")
                insert_event(sql, run_id, run_to, error or reason)
                return True
        except Refused:
            return False

    def _end_checked(
        self,
        sql: Sql,
        run_id: str,
        attempt: int,
        ending: AttemptState,
        reason: str,
        only: Sequence[AttemptState],
        silent_for: float | None,
    ) -> bool:
        if silent_for is not None:
            silent = sql.scalar(
                "SELECT 1 FROM run_attempts WHERE run_id = :run_id AND attempt = :attempt"
                f" AND {sql.older_than('heartbeat_at', 'silent_for')}",
                {"run_id": run_id, "attempt": attempt, "silent_for": silent_for},
            )
            if silent is None:
                return False
        return self.end(sql, run_id, attempt, ending, reason, only=only)
