"""Run retries' pure rule (:func:`dagd.runs.retries.retry_of`) and the tag checked at submission."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dagd.errors import InvalidArgument
from dagd.runs.model import Run, RunStatus
from dagd.runs.plugins import Submission
from dagd.runs.requests import finalize
from dagd.runs.retries import retry_of


def failed(tags: dict[str, str], run_id: str = "r1") -> Run:
    return Run(
        run_id=run_id, job_name="job", status=RunStatus.FAILURE, tags=tags, run_config={"a": 1}, priority=3,
        created_at=datetime(2030, 1, 1, tzinfo=timezone.utc), code_location="loc",
    )  # fmt: skip


def test_first_retry_links_parent_and_root_and_keeps_job_config_and_tags() -> None:
    retry = retry_of(failed({"team": "a"}), default_max=2)
    assert retry is not None
    assert retry.tags == {
        "team": "a",
        "dagd/parent_run_id": "r1",
        "dagd/root_run_id": "r1",
        "dagd/retry_number": "1",
    }
    assert (retry.job_name, retry.run_config, retry.code_location) == ("job", {"a": 1}, "loc")
    assert retry.idempotency_key == "dagd-retry:r1"


def test_a_retry_of_a_retry_keeps_the_root_and_counts_on() -> None:
    parent = failed({"dagd/parent_run_id": "r1", "dagd/root_run_id": "r1", "dagd/retry_number": "1"}, "r2")
    retry = retry_of(parent, default_max=2)
    assert (
        retry is not None
        and retry.tags["dagd/root_run_id"] == "r1"
        and retry.tags["dagd/retry_number"] == "2"
    )
    assert retry.tags["dagd/parent_run_id"] == "r2"
    spent = failed({"dagd/root_run_id": "r1", "dagd/retry_number": "2"}, "r3")
    assert retry_of(spent, default_max=2) is None


@pytest.mark.parametrize(("tag", "default", "retried"), [("0", 5, False), ("2", 0, True), (None, 0, False)])
def test_the_max_retries_tag_overrides_the_instance_default(
    tag: str | None, default: int, retried: bool
) -> None:
    tags = {} if tag is None else {"dagd/max_retries": tag}
    assert (retry_of(failed(tags), default_max=default) is not None) is retried


@pytest.mark.parametrize("raw", ["-1", "x", "101", "1.5"])
def test_a_bad_max_retries_tag_is_refused_at_submission(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="dagd/max_retries"):
        finalize(Submission(job_name="job", tags={"dagd/max_retries": raw}))


@pytest.mark.parametrize("raw", ["", "a b", "-starts-with-dash", "q/1", "é", "x" * 201, "amq\x00"])
def test_a_bad_queue_tag_is_refused_at_submission(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="tag dagd/queue must be a queue name"):
        finalize(Submission(job_name="job", tags={"dagd/queue": raw}))


@pytest.mark.parametrize("raw", ["dagd", "gpu-1", "team.a:b_c", "x" * 200])
def test_a_good_queue_tag_is_accepted(raw: str) -> None:
    assert finalize(Submission(job_name="job", tags={"dagd/queue": raw})).tags["dagd/queue"] == raw
