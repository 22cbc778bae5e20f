"""Run retries, as Dagster's ``run_retries`` work: a run that ends FAILURE is submitted again as a
new run, linked to its parent and to the root of its chain, until its retries are spent. A
CANCELED run is never retried.

``run_retries: {enabled: true, max_retries: N}`` in ``dagd.yaml``; the tag ``dagd/max_retries``
overrides N for one run (and is inherited by its retries). A retry carries the tags
``dagd/parent_run_id``, ``dagd/root_run_id`` and ``dagd/retry_number`` (1 for the first retry),
and the parent's job, config, code location and other tags. Run monitoring (the leader's)
submits them; each retry's idempotency key is derived from its parent, so a pass repeated after
a crash, or two passes at once, make one retry at most.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagd.runs.model import (
    MAX_RETRIES_TAG,
    PARENT_RUN_TAG,
    RETRY_NUMBER_TAG,
    ROOT_RUN_TAG,
    Run,
    check_max_retries,
)
from dagd.runs.plugins import Submission

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

RETRY_METADATA = {"x-dagd-client": "run-retries"}


def retry_of(run: Run, default_max: int) -> Submission | None:
    """The retry to submit for a FAILURE ``run``, or None when its retries are spent (pure)."""
    try:
        limit = check_max_retries(run.tags)
    except ValueError:
        limit = None  # refused at submission since it was added; an older run keeps the default
    limit = default_max if limit is None else limit
    try:
        number = int(run.tags.get(RETRY_NUMBER_TAG, "0")) + 1
    except ValueError:
        number = 1
    if number > limit:
        return None
    tags = {k: v for k, v in run.tags.items() if k not in (PARENT_RUN_TAG, ROOT_RUN_TAG, RETRY_NUMBER_TAG)}
    tags[PARENT_RUN_TAG] = run.run_id
    tags[ROOT_RUN_TAG] = run.tags.get(ROOT_RUN_TAG, run.run_id)
    tags[RETRY_NUMBER_TAG] = str(number)
    if MAX_RETRIES_TAG in run.tags:
        tags[MAX_RETRIES_TAG] = run.tags[MAX_RETRIES_TAG]
    return Submission(
        job_name=run.job_name,
        tags=tags,
        run_config=dict(run.run_config),
        priority=run.priority,
        code_location=run.code_location,
        idempotency_key=f"dagd-retry:{run.run_id}",
    )


def submit_retries(instance: Instance, failed: list[Run]) -> list[Run]:
    """Submit the retries ``failed`` runs are owed; the runs made (or found, if made before)."""
    config = instance.config.run_retries
    if not config.enabled:
        return []
    submissions = [s for s in (retry_of(run, config.max_retries) for run in failed) if s is not None]
    if not submissions:
        return []
    return instance.coordinator.submit_runs(submissions, RETRY_METADATA)
