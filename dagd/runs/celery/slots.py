"""Which of the runs the queue chose fit into free worker slots (pure; no Celery import).

The run queue first applies ``max_concurrent_runs`` and tag limits (:func:`dagd.runs.selection.
select_runs`), which returns runs in launch order (priority first); this keeps that order and
takes each run only while its queue has a free slot on a live worker host, so a higher-priority
run is never passed over by a lower one of the same queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def fit_slots(
    to_launch: Sequence[str], queue_of: Mapping[str, str], free: Mapping[str, int]
) -> tuple[list[str], dict[str, str]]:
    """(runs to launch now, {run waiting: its queue}), ``to_launch``'s order kept."""
    left = dict(free)
    launch: list[str] = []
    waiting: dict[str, str] = {}
    for run_id in to_launch:
        queue = queue_of[run_id]
        if left.get(queue, 0) > 0:
            left[queue] -= 1
            launch.append(run_id)
        else:
            waiting[run_id] = queue
    return launch, waiting
