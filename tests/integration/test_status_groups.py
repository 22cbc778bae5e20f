"""Which statuses count as queued, in progress and finished is decided once (dagd/runs/model.py):
the web UI's Runs tabs list exactly the runs their counts (the queue status) count. Regression: the
In progress tab listed NOT_STARTED runs that its count left out. Both databases."""

from __future__ import annotations

from typing import Any

from dagd.runs import model
from dagd.runs.model import RunFilter, RunStatus
from dagd.runs.queue import queue_status
from dagd.storage.runs import NewRun
from dagd.webserver.display import TABS


def test_each_runs_tab_lists_exactly_what_its_count_counts(storage: Any) -> None:
    for status in RunStatus:  # two runs in every status
        for _ in range(2):
            storage.runs.create(NewRun(job_name="j", tags={}, run_config={}, priority=0, status=status))
    counts = queue_status(storage, None)

    def listed(tab: str) -> int:
        return len(storage.runs.list(RunFilter(statuses=[RunStatus(s) for s in TABS[tab]], limit=1000)))

    assert listed("in_progress") == counts.in_progress == 2 * len(model.IN_PROGRESS_STATUSES)
    assert listed("queued") == counts.queued == 2
    assert listed("finished") == 2 * len(model.FINISHED_STATUSES)
    assert {RunStatus(s) for tab in TABS.values() for s in tab} == (
        model.QUEUED_STATUSES | model.IN_PROGRESS_STATUSES | model.FINISHED_STATUSES
    )
