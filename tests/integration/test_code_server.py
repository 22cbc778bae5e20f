"""The code-server process under concurrent callers, as the sensor daemon's thread pool calls it."""

from __future__ import annotations

import pathlib
import threading

import pytest
from helpers.codeserver import code_server

from dagd.codeserver.protocol import CodeServerClient, Evaluation
from dagd.codeserver.registry import socket_for
from dagd.errors import DagdError
from dagd.instance.instance import Instance

DEFS = """
import time

from dagd import Definitions, SkipReason, job, sensor


@job
def noop(context):
    pass


@sensor(job=noop, minimum_interval_seconds=1)
def slowish(context):
    time.sleep(0.2)
    return SkipReason("nothing new")


defs = Definitions(jobs=[noop], sensors=[slowish])
"""

CALLERS = 64  # more than the 16 sensor evaluations (default) plus the scheduler and supervisor


@pytest.mark.timeout(60)
def test_concurrent_callers_are_all_answered_not_refused_by_a_full_listen_backlog(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    defs_file = tmp_path / "slow_defs.py"
    defs_file.write_text(DEFS)
    instance = Instance.load(home)
    with code_server(instance, defs_file, name="slow_defs"):
        client = CodeServerClient(socket_for(instance, "slow_defs"))
        barrier = threading.Barrier(CALLERS)
        answers: list[Evaluation] = []
        errors: list[str] = []

        def call() -> None:
            barrier.wait(timeout=10)
            try:
                answers.append(client.evaluate_sensor("slowish", None, None, timeout=20))
            except DagdError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=call) for _ in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == [], f"{len(errors)} of {CALLERS} refused, e.g. {errors[0]}"
    assert len(answers) == CALLERS and all(a.skip_reason == "nothing new" for a in answers)
