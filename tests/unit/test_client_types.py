"""dagd.client.types: typed results that are still the dicts older callers read (issue #20 item 4)."""

from __future__ import annotations

import json

from dagd.client.types import DaemonStatus, QueueStatus, Run, RunAttempt, TagLimitUsage


def test_a_run_is_a_dataclass_and_the_dict_of_its_json_shape() -> None:
    run = Run(run_id="r1", job_name="j", status="QUEUED", tags={"a": "b"})
    assert run.status == run["status"] == "QUEUED"
    assert run == {
        "run_id": "r1", "job_name": "j", "status": "QUEUED", "tags": {"a": "b"}, "priority": 0,
        "created_at": None, "started_at": None, "ended_at": None, "run_config": {}, "error": None,
        "worker_pid": None, "attempt": 0, "host": None,
    }  # fmt: skip
    assert "attempts" not in run  # only get_run fills them
    assert json.loads(run.to_json()) == run and json.loads(json.dumps(run)) == run


def test_attribute_and_item_stay_in_step() -> None:
    run = Run(run_id="r1", job_name="j", status="STARTED")
    run.status = "SUCCESS"
    assert run["status"] == "SUCCESS" and run.finished
    run["attempts"] = [RunAttempt(attempt=1, state="DONE")]
    assert run.attempts is not None and run.attempts[0].state == "DONE"
    run["extra"] = 1  # not a field: a plain key, as before
    assert run["extra"] == 1 and not hasattr(run, "extra")


def test_from_mapping_reads_json_output_back_nested_and_ignores_unknown_keys() -> None:
    text = json.dumps(
        {
            "daemons": [{"name": "run_queue", "healthy": True, "new_field": 1}],
            "draining": False,
            "role": "leader",
        }
    )
    status = DaemonStatus.from_mapping(json.loads(text))
    assert status.daemons[0].name == "run_queue" and status.healthy and status.role == "leader"
    queue = QueueStatus.from_mapping(
        {"paused": False, "queued": 1, "in_progress": 0, "max_concurrent_runs": -1,
         "tag_limits": [{"limit": "team (any value, limit 2)", "in_use": 0, "capacity": 2, "key": "team"}]}
    )  # fmt: skip
    assert isinstance(queue.tag_limits[0], TagLimitUsage) and queue.tag_limits[0].key == "team"
    run = Run.from_mapping(
        {"run_id": "r", "job_name": "j", "status": "QUEUED", "attempts": [{"attempt": 1, "state": "DONE"}]}
    )
    assert run.attempts is not None and isinstance(run.attempts[0], RunAttempt)
