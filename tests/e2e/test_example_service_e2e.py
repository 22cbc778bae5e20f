"""examples/react_to_finished_runs/service.py (issue #20 item 4): a service built on dagd.client
reacts to every finished run, and a service killed and restarted misses none and submits no
downstream run twice."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.procs import DagdProcess, wait_for

from dagd.client.client import Client

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICE = ROOT / "examples" / "react_to_finished_runs" / "service.py"
DEFS = ROOT / "tests" / "fixtures" / "defs.py"


class Service:
    def __init__(self, home: pathlib.Path, state: pathlib.Path, out: pathlib.Path) -> None:
        self.home, self.state, self.out = home, state, out
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with open(self.out, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVICE), "--job", "hello", "--submit", "echo_config",
                 "--state", str(self.state), "--poll-seconds", "0.2"],
                stdout=out, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                env={**os.environ, "DAGD_HOME": str(self.home)},
            )  # fmt: skip
        wait_for(self.state.exists, 30, "the service's first cursor")

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.out.read_text().splitlines() if x.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)


@pytest.fixture
def service(dagd: DagdProcess, tmp_path: pathlib.Path) -> Iterator[Service]:
    svc = Service(dagd.home, tmp_path / "state.json", tmp_path / "service.out")
    yield svc
    svc.stop(signal.SIGKILL)


@pytest.mark.timeout(180)
def test_the_example_service_reacts_to_each_finished_run_once_across_a_kill(
    dagd: DagdProcess, service: Service
) -> None:
    dagd.start("-f", str(DEFS))
    client = Client.for_home(dagd.home)
    before = client.submit("hello")  # before the service's first start: history, not handled
    wait_for(lambda: client.get_run(before.run_id)[0].finished, 60, "the earlier run to end")
    service.start()

    first = [client.submit("hello").run_id for _ in range(3)]

    def handled(ids: list[str]) -> list[dict[str, Any]] | None:
        lines = [x for x in service.lines() if x["run_id"] in ids]
        return lines if len(lines) == len(ids) else None

    wait_for(lambda: handled(first), 60, "the service to see the first runs end")

    # Killed without warning; runs end while it is down; restarted from its cursor.
    service.stop(signal.SIGKILL)
    second = [client.submit("hello").run_id for _ in range(3)]
    wait_for(lambda: all(client.get_run(r)[0].finished for r in second), 60, "runs to end while it is down")
    service.start()
    wait_for(lambda: handled(second), 60, "the restarted service to catch up")
    wait_for(
        lambda: len(client.list_runs(job_name="echo_config", limit=100)[0]) >= 6, 30, "the downstream runs"
    )

    lines = service.lines()
    seen = [x["run_id"] for x in lines]
    assert before.run_id not in seen, "the history before the first start is not replayed"
    # Each finished run reported (a kill between a report and saving the cursor may repeat one) ...
    assert set(seen) == set(first + second), lines
    assert all(x["status"] == "SUCCESS" and x["submitted"] for x in lines), lines
    # ... and its downstream run submitted exactly once (an idempotency key per upstream run).
    downstream, _ = client.list_runs(job_name="echo_config", limit=100)
    assert sorted(r.tags["upstream_run_id"] for r in downstream) == sorted(first + second)
    client.close()
