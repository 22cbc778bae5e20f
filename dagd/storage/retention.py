"""Deleting finished runs with everything stored about them: ``dagctl runs delete``/``purge`` and the
automatic purge (:mod:`dagd.supervisor.retention`).

A run is deleted only once it has finished (SUCCESS, FAILURE, CANCELED are terminal: nothing moves
a run out of them), so deleting never races a run's own progress. ``delete_runs`` is all or
nothing: one unknown or unfinished run and no row changes. Purges go in small batches, each its own
short write transaction, so a purge of a million runs never holds the database (SQLite's single
write lock, PostgreSQL's row locks) for longer than one batch.

Where a run's rows live: ``runs`` plus every table in :data:`RUN_DEPENDENT_TABLES`, keyed by
``run_id`` (no foreign keys, so no ON DELETE CASCADE to lean on). A new per-run table is added to
that tuple and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from dagd.errors import InvalidArgument, NotFound
from dagd.runs.model import FINISHED_STATUSES, RunStatus
from dagd.storage.sql import Sql, in_list, padded

if TYPE_CHECKING:
    from dagd.storage.database import Database

#: Tables with rows that belong to one run (column ``run_id``), deleted with it in the same
#: transaction, before the run's own row.
RUN_DEPENDENT_TABLES: tuple[str, ...] = ("run_tags", "run_events", "run_logs", "run_attempts")

#: Runs deleted per transaction by a purge, unless the caller says otherwise.
DEFAULT_BATCH_SIZE = 200
_FINISHED = tuple(s.value for s in RunStatus if s in FINISHED_STATUSES)


def finished_statuses(statuses: Iterable[RunStatus] | None) -> tuple[RunStatus, ...]:
    """``statuses`` checked to be finished ones (all finished statuses when None or empty)."""
    chosen = tuple(dict.fromkeys(statuses or ()))
    for status in chosen:
        if status not in FINISHED_STATUSES:
            raise InvalidArgument(
                f"status {status.value}: only finished runs can be deleted ({', '.join(_FINISHED)})"
            )
    return chosen or tuple(RunStatus(s) for s in _FINISHED)


def delete_runs(storage: Database, run_ids: Sequence[str]) -> list[str]:
    """Delete these runs, their tags, events and logs, in one transaction; the ids deleted.

    Refused, with nothing deleted, when one of them does not exist (:class:`NotFound`) or has not
    finished (:class:`InvalidArgument` naming it and its status).
    """
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        raise InvalidArgument("no run ids given")
    with storage.sql_write() as sql:
        found: dict[str, str] = {}
        for chunk in padded(ids):
            names, params = in_list("r", chunk)
            found.update(sql.rows(f"SELECT run_id, status FROM runs WHERE run_id IN ({names})", params))
        for run_id in ids:
            if run_id not in found:
                raise NotFound(f"no run with id {run_id!r}; nothing was deleted")
            if found[run_id] not in _FINISHED:
                raise InvalidArgument(
                    f"run {run_id} is {found[run_id]}: only finished runs can be deleted "
                    f"({', '.join(_FINISHED)}); nothing was deleted"
                )
        _delete(sql, ids)
    return ids


def purge_runs(
    storage: Database,
    ended_before: datetime,
    statuses: Iterable[RunStatus] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[int]:
    """Delete the finished runs (of ``statuses``, default all finished) that ended before
    ``ended_before``, oldest first, one batch per transaction; yields each batch's count.

    A generator, so the caller decides the pace: ``sum(purge_runs(...))`` for everything at once
    (``dagctl runs purge``), or a pause between batches (the automatic purge).
    """
    chosen = finished_statuses(statuses)
    names, params = in_list("st", [s.value for s in chosen])
    params.update({"before": ended_before, "limit": batch_size})
    # Find the batch in a read transaction: on SQLite a write transaction would hold the only write
    # lock for the whole search. The ids stay valid: a finished run never changes status again.
    query = (
        f"SELECT run_id FROM runs WHERE status IN ({names}) AND ended_at < :before ORDER BY seq LIMIT :limit"
    )
    while True:
        with storage.sql_read() as sql:
            ids = [row[0] for row in sql.rows(query, params)]
        if not ids:
            return
        with storage.sql_write() as sql:
            deleted = _delete(sql, ids)
        yield deleted
        if len(ids) < batch_size:
            return


def _delete(sql: Sql, run_ids: list[str]) -> int:
    """Delete finished runs and their dependent rows (the one place that knows them); how many runs."""
    deleted = 0
    for chunk in padded(run_ids):
        names, params = in_list("r", chunk)
        finished, finished_params = in_list("f", _FINISHED)
        for table in RUN_DEPENDENT_TABLES:
            sql.execute(
                f"DELETE FROM {table} WHERE run_id IN ({names}) AND run_id IN"
                f" (SELECT run_id FROM runs WHERE run_id IN ({names}) AND status IN ({finished}))",
                {**params, **finished_params},
            )
        deleted += sql.execute(
            f"DELETE FROM runs WHERE run_id IN ({names}) AND status IN ({finished})",
            {**params, **finished_params},
        )
    return deleted
