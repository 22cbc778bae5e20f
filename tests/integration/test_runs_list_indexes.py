"""Runs list at scale (#19): the tag filter walks run_tags (key, value, run_seq), a status filter walks
(status, seq) on SQLite even after ANALYZE, run retries' search of recent failures walks (status,
ended_at); migration 0005 gives the tags of a database holding runs their run's seq. On SQLite and
PostgreSQL (query plans: SQLite, whose planner is the one that went wrong; PostgreSQL keeps
per-value statistics)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from dagd.runs.model import RunFilter, RunStatus
from dagd.storage import Storage
from dagd.storage.migrate import _alembic_config, head_revision, upgrade
from dagd.storage.runs import NewRun
from dagd.storage.sql import Sql

UTC = timezone.utc


def new_run(
    job: str = "job", tags: dict[str, str] | None = None, status: RunStatus = RunStatus.QUEUED
) -> NewRun:
    return NewRun(job_name=job, tags=tags or {}, run_config={}, priority=0, status=status)


def ids(storage: Storage, **filter_args: Any) -> list[str]:
    return [r.run_id for r in storage.runs.list(RunFilter(**filter_args))]


def all_pages(storage: Storage, **filter_args: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: int | None = None
    while True:
        page = storage.runs.list(RunFilter(before_seq=cursor, **filter_args))
        if not page:
            return pages
        assert len(pages) < 50, "pagination does not terminate"
        pages.append([r.run_id for r in page])
        cursor = page[-1].seq


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """(query, SQLite's plan for it) of every query read through ``Sql.records`` or ``Sql.rows``
    (SQLite only)."""
    seen: list[tuple[str, str]] = []

    def explaining(read: Any) -> Any:
        def explained(self: Sql, sql: str, params: Any = None) -> list[Any]:
            if self.dialect == "sqlite":
                text, values = self._text_params(sql, params)
                self.cursor.execute("EXPLAIN QUERY PLAN " + text, values)
                seen.append((sql, " | ".join(str(row[-1]) for row in self.cursor.fetchall())))
            return read(self, sql, params)  # type: ignore[no-any-return]

        return explained

    monkeypatch.setattr(Sql, "records", explaining(Sql.records))
    monkeypatch.setattr(Sql, "rows", explaining(Sql.rows))
    yield seen


def analyze(storage: Storage) -> None:
    with storage.write() as conn:
        conn.execute(sa.text("ANALYZE"))


# -- tag filter -----------------------------------------------------------------------------------


def test_tag_filter_pages_newest_first_with_other_filters(storage: Storage) -> None:
    made: list[tuple[str, dict[str, str], str]] = []
    for i in range(37):
        tags = {"team": "a" if i % 3 else "b", **({"env": "prod"} if i % 2 else {})}
        job = f"job_{i % 2}"
        run = storage.runs.create(new_run(job, tags))
        if i % 5 == 0:
            storage.runs.transition(run.run_id, RunStatus.CANCELED)
        made.append((run.run_id, tags, job))
    newest_first = list(reversed(made))
    canceled = {run_id for i, (run_id, _, _) in enumerate(made) if i % 5 == 0}

    team_a = [r for r, tags, _ in newest_first if tags["team"] == "a"]
    assert [r for page in all_pages(storage, tags={"team": "a"}, limit=4) for r in page] == team_a
    assert [len(p) for p in all_pages(storage, tags={"team": "a"}, limit=4)] == [4] * 6
    both = [r for r, tags, _ in newest_first if tags["team"] == "a" and tags.get("env") == "prod"]
    assert [
        r for page in all_pages(storage, tags={"team": "a", "env": "prod"}, limit=3) for r in page
    ] == both
    # The driving tag need not be the most selective one; the order of tags does not matter.
    assert ids(storage, tags={"env": "prod", "team": "a"}, limit=100) == both
    assert ids(storage, tags={"team": "a"}, statuses=[RunStatus.CANCELED], job_name="job_1", limit=100) == [
        r for r, tags, job in newest_first if tags["team"] == "a" and r in canceled and job == "job_1"
    ]
    # Bulk operations (runs terminate --tag) match the same runs, unpaged.
    matched = storage.runs.ids_matching(
        RunFilter(tags={"team": "a", "env": "prod"}, statuses=[RunStatus.QUEUED])
    )
    assert sorted(matched) == sorted((r, RunStatus.QUEUED) for r in both if r not in canceled)
    assert ids(storage, tags={"team": "nobody"}) == []
    assert ids(storage, tags={"team": "a", "env": "dev"}) == []


def test_tag_filter_walks_the_tag_index_newest_first(storage: Storage, plans: list[tuple[str, str]]) -> None:
    """Regression: the tag filter collected every run with the tag through (key, value), then sorted
    them by seq: 151 ms on SQLite, 29 ms on PostgreSQL for one page at 1,000,000 runs."""
    for i in range(300):
        storage.runs.create(new_run(tags={"team": f"t{i % 3}"}))
    analyze(storage)
    plans.clear()

    page = storage.runs.list(RunFilter(tags={"team": "t1"}, limit=10))

    assert [r.tags["team"] for r in page] == ["t1"] * 10
    if storage.dialect == "sqlite":
        [(_, plan)] = plans
        driving, *rest = plan.split(" | ")
        assert (
            driving.startswith("SEARCH t0 USING")
            and "ix_run_tags_key_value_seq (key=? AND value=?)" in driving
        )
        assert rest == ["SEARCH r USING INTEGER PRIMARY KEY (rowid=?)"], plan  # each run by its seq
        assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan  # the index is already in seq order


# -- status filter --------------------------------------------------------------------------------


def test_status_filter_uses_the_status_index_after_analyze(
    storage: Storage, plans: list[tuple[str, str]]
) -> None:
    """Regression: after ANALYZE (three finished statuses, a third of the runs each) SQLite judged
    a filter on the three in-progress statuses to match most runs and scanned every run backwards
    for a page that was empty: 198 ms at 1,000,000 runs."""
    for status in (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED) * 100:
        storage.runs.create(new_run(status=status))
    started = storage.runs.create(new_run()).run_id
    storage.runs.transition(started, RunStatus.STARTING)
    analyze(storage)
    plans.clear()

    in_progress = [RunStatus.STARTING, RunStatus.STARTED, RunStatus.CANCELING]
    assert ids(storage, statuses=in_progress) == [started]
    assert len(ids(storage, statuses=[RunStatus.SUCCESS, RunStatus.FAILURE], limit=500)) == 200
    assert len(ids(storage, statuses=[RunStatus.FAILURE], job_name="job", limit=500)) == 100

    if storage.dialect == "sqlite":
        assert len(plans) == 3
        for query, plan in plans:
            assert "USING INDEX ix_runs_status_seq (status=?)" in plan, (query, plan)


def test_the_queue_and_monitoring_views_use_the_status_index_after_analyze(
    storage: Storage, plans: list[tuple[str, str]]
) -> None:
    """Regression: the same misjudgement as above made SQLite scan the whole history for the run
    queue's view of queued and in-progress runs (every queue pass, and the queue counts of the
    runs page: 140-410 ms a page at 1,000,000 runs), run monitoring's view, ``with_status`` and
    a bulk terminate's matching."""
    for status in (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED) * 100:
        storage.runs.create(new_run(status=status))
    queued = storage.runs.create(new_run(tags={"team": "a"})).run_id
    [(claimed, _)] = storage.runs.claim_many(
        [storage.runs.create(new_run()).run_id], expected=(RunStatus.QUEUED,)
    )
    analyze(storage)
    plans.clear()

    waiting, running = storage.runs.queue_view()
    assert [q[0] for q in waiting] == [queued] and [r[0] for r in running] == [claimed.run_id]
    _, in_progress = storage.attempts.in_progress([RunStatus.STARTING, RunStatus.STARTED])
    assert [run.run_id for run, _ in in_progress] == [claimed.run_id]
    assert [r.run_id for r in storage.runs.with_status([RunStatus.STARTING])] == [claimed.run_id]
    matched = storage.runs.ids_matching(RunFilter(statuses=[RunStatus.QUEUED], tags={"team": "a"}))
    assert matched == [(queued, RunStatus.QUEUED)]

    if storage.dialect == "sqlite":
        by_status = [(q, p) for q, p in plans if "status IN" in q]
        assert len(by_status) == 4, plans
        for query, plan in by_status:
            assert "USING INDEX ix_runs_status_seq (status=?)" in plan, (query, plan)


# -- failures since a time (run retries) ----------------------------------------------------------


def test_failed_since_searches_the_status_and_end_time_index(
    storage: Storage, plans: list[tuple[str, str]]
) -> None:
    """Regression: run retries' search of failures that ended since a time read every FAILURE run
    through (status, seq) and sorted them by end time: 76 ms with 80,000 failures in history."""
    for _ in range(50):
        run = storage.runs.create(new_run())
        storage.runs.transition(run.run_id, RunStatus.FAILURE)
    analyze(storage)
    plans.clear()

    now, failed = storage.runs.failed_since(datetime.now(UTC) - timedelta(hours=1), limit=20)

    assert len(failed) == 20 and [r.ended_at for r in failed] == sorted(r.ended_at for r in failed)  # type: ignore[type-var]
    if storage.dialect == "sqlite":
        [(_, plan)] = [p for p in plans if "ended_at >=" in p[0]]
        assert "USING INDEX ix_runs_status_ended_at (status=? AND ended_at>?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan


# -- migration 0005 -------------------------------------------------------------------------------


def test_upgrade_gives_the_tags_of_stored_runs_their_run_seq(storage: Storage) -> None:
    """Migration 0005 on a database at 0004 holding runs, their tags, and a stray tag of a run that
    is no longer stored; afterwards the tag filter finds the old runs and the new ones in order."""
    from alembic import command

    with storage.write() as conn:
        for table in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f'DROP TABLE "{table}"'))
    with storage.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0004")
    old = [f"old-{i}" for i in range(6)]
    with storage.write() as conn:
        for i, run_id in enumerate(old):
            conn.execute(
                sa.text(
                    "INSERT INTO runs (run_id, job_name, status, priority, tags, run_config, created_at,"
                    " updated_at) VALUES (:r, 'job', 'SUCCESS', 0, :tags, '{}', :t, :t)"
                ),
                {"r": run_id, "tags": f'{{"team": "t{i % 2}"}}', "t": "2026-12-01 10:00:00.000000"},
            )
            conn.execute(
                sa.text("INSERT INTO run_tags (run_id, key, value) VALUES (:r, 'team', :v)"),
                {"r": run_id, "v": f"t{i % 2}"},
            )
        conn.execute(sa.text("INSERT INTO run_tags (run_id, key, value) VALUES ('gone', 'team', 't0')"))

    assert upgrade(storage.engine) == ("0004", head_revision())

    with storage.read() as conn:
        tag_seqs = dict(conn.execute(sa.text("SELECT run_id, run_seq FROM run_tags")).all())
        run_seqs = dict(conn.execute(sa.text("SELECT run_id, seq FROM runs")).all())
    assert tag_seqs == run_seqs and set(run_seqs) == set(old)  # the stray tag is gone
    new = storage.runs.create(new_run(tags={"team": "t0"})).run_id
    assert ids(storage, tags={"team": "t0"}) == [new, old[4], old[2], old[0]]
    assert ids(storage, tags={"team": "t1"}, before_seq=run_seqs[old[5]]) == [old[3], old[1]]
