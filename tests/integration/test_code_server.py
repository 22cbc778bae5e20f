"""The code-server process under concurrent callers, and its batched ``evaluate_many`` request."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

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


@sensor(job=noop, minimum_interval_seconds=1)
def hangs(context):
    time.sleep(3600)


@sensor(job=noop, minimum_interval_seconds=1)
def quick(context):
    context.update_cursor(str(int(context.cursor or 0) + 1))
    return SkipReason(f"quick at {context.cursor}")


defs = Definitions(jobs=[noop], sensors=[slowish, hangs, quick])
"""

CALLERS = 64  # more than the 16 sensor evaluations (default) plus the scheduler and supervisor


@pytest.fixture
def served(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> Iterator[tuple[CodeServerClient, subprocess.Popen[bytes]]]:
    """A real code server for DEFS, a client of it, and its process."""
    defs_file = tmp_path / "slow_defs.py"
    defs_file.write_text(DEFS)
    instance = Instance.load(home)
    with code_server(instance, defs_file, name="slow_defs") as proc:
        yield CodeServerClient(socket_for(instance, "slow_defs")), proc


@pytest.mark.timeout(60)
def test_concurrent_callers_are_all_answered_not_refused_by_a_full_listen_backlog(
    served: tuple[CodeServerClient, subprocess.Popen[bytes]],
) -> None:
    client, _ = served
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


@pytest.mark.timeout(60)
def test_evaluate_many_answers_quick_items_at_once_and_times_out_a_hung_one_alone(
    served: tuple[CodeServerClient, subprocess.Popen[bytes]],
) -> None:
    """One request for many sensors: a hung one delays only its own answer, which is a timeout."""
    client, _ = served
    items = [{"kind": "sensor", "name": "hangs"}] + [
        {"kind": "sensor", "name": "quick", "cursor": str(i)} for i in range(200)
    ]
    items.append({"kind": "sensor", "name": "no_such_sensor"})
    arrived: dict[int, tuple[float, Evaluation]] = {}
    start = time.monotonic()
    client.evaluate_many(
        items, 2.0, lambda answers: arrived.update((i, (time.monotonic() - start, e)) for i, e in answers)
    )
    assert sorted(arrived) == list(range(len(items)))
    hung_at, hung = arrived[0]
    assert hung.error == "sensor hangs timed out after 2s" and hung_at >= 2.0, (hung_at, hung)
    quick = [arrived[i] for i in range(1, 201)]
    # Every quick answer was handed over long before the hung one timed out.
    assert max(at for at, _ in quick) < 1.5, max(at for at, _ in quick)
    assert [e.cursor for _, e in quick] == [str(i + 1) for i in range(200)]
    assert all(e.cursor_updated and e.skip_reason == f"quick at {i + 1}" for i, (_, e) in enumerate(quick))
    assert "no sensor named 'no_such_sensor'" in (arrived[201][1].error or "")


@pytest.mark.timeout(60)
def test_evaluate_many_reports_the_unanswered_items_when_the_code_server_dies(
    served: tuple[CodeServerClient, subprocess.Popen[bytes]],
) -> None:
    client, proc = served
    answered: list[int] = []

    def on_answers(answers: list[tuple[int, Evaluation]]) -> None:
        answered.extend(i for i, _ in answers)
        os.kill(proc.pid, signal.SIGKILL)  # after the first group: the rest is never answered

    items = [{"kind": "sensor", "name": "quick"}, {"kind": "sensor", "name": "hangs"}]
    with pytest.raises(DagdError, match="closed the connection before answering every evaluation"):
        client.evaluate_many(items, 30.0, on_answers)
    assert answered == [0]
