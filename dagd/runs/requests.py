"""Run request -> submission: the one place the rules for a new run's tags live.

Schedules, sensors, the API and the web UI (through the API) all build submissions here:

- tag precedence: the job's tags from code < the request's tags < an explicit priority;
- ``@job(resumable=True)`` becomes the ``dagd/resumable`` tag (run monitoring may resume it);
- the priority is parsed from the tags (an integer in the column's range), and ``dagd/max_runtime``,
  ``dagd/max_retries`` and ``dagd/queue`` are checked, so a bad value is refused at submission
  with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dagd.errors import InvalidArgument
from dagd.runs.model import (
    PRIORITY_TAG,
    RESUMABLE_TAG,
    check_max_retries,
    check_max_runtime,
    check_queue_tag,
    parse_priority,
)
from dagd.runs.plugins import Submission


def merged_tags(
    job_tags: Mapping[str, str],
    request_tags: Mapping[str, str],
    *,
    resumable: bool,
    priority: int | None = None,
) -> dict[str, str]:
    """The run's tags: code < request < explicit ``priority``; resumable jobs marked."""
    tags = {**job_tags, **request_tags}
    if resumable:
        tags.setdefault(RESUMABLE_TAG, "true")
    if priority is not None:
        tags[PRIORITY_TAG] = str(priority)
    return tags


def checked_priority(tags: dict[str, str]) -> int:
    """The priority the tags give; InvalidArgument naming a bad dagd/ tag."""
    try:
        priority = parse_priority(tags)
        check_max_runtime(tags)
        check_max_retries(tags)
        check_queue_tag(tags)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    return priority


def finalize(submission: Submission) -> Submission:
    """The submission with its priority taken from its tags; InvalidArgument naming a bad tag."""
    return replace(submission, priority=checked_priority(submission.tags))


def build_submission(
    *,
    job_name: str,
    job_tags: Mapping[str, str],
    request_tags: Mapping[str, str],
    resumable: bool,
    run_config: dict[str, Any],
    code_location: str | None,
    idempotency_key: str | None = None,
    priority: int | None = None,
) -> Submission:
    """A checked submission from a run request (raises InvalidArgument naming what is wrong)."""
    tags = merged_tags(job_tags, request_tags, resumable=resumable, priority=priority)
    # finalize()'s checks, without its dataclasses.replace (a batch builds thousands of these).
    return Submission(
        job_name=job_name,
        tags=tags,
        run_config=run_config,
        priority=checked_priority(tags),
        code_location=code_location,
        idempotency_key=idempotency_key,
    )
