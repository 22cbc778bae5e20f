"""Streams end to end (issue #20), on SQLite and PostgreSQL: ``dagctl runs watch`` sees every run
status change exactly once and in order, also when killed and resumed from its cursor and across a
supervisor restart; a reader that falls behind is ended with a clear error; streams past
``streams.max_streams`` are refused; ``runs logs --follow`` and ``submit --wait`` ride the streams.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.procs import DAGCTL, DagdProcess, wait_for

from dagd.client.client import Client

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.fixture(params=["sqlite", "postgres"])
def storage_yaml(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    url = request.getfixturevalue("pg_url")
    return f"storage:\n  postgres:\n    url: '{url}'\n"


@pytest.fixture
def client(dagd: DagdProcess) -> Iterator[Client]:
    holder: list[Client] = []

    class Lazy:
        def __getattr__(self, name: str) -> Any:
            if not holder:
                holder.append(Client.for_home(dagd.home))
            return getattr(holder[0], name)

    yield Lazy()  # type: ignore[misc]
    for c in holder:
        c.close()


class Watcher:
    """``dagctl runs watch --json`` as a child process; its lines collected by a thread."""

    def __init__(self, home: pathlib.Path, *args: str) -> None:
        env = {**os.environ, "DAGD_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [*DAGCTL, "runs", "watch", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        self.lines: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        self._thread.join(timeout=5)
        return code


def status_events(client: Any, run_ids: list[str]) -> dict[str, list[str]]:
    """What storage holds: each run's status changes in order (the oracle)."""
    out = {}
    for run_id in run_ids:
        _, events = client.get_run(run_id)
        out[run_id] = [e["status"] for e in events if e["status"]]
    return out


def seen(lines: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        out.setdefault(line["run_id"], []).append(line["status"])
    return out


def submit_many(client: Any, count: int, threads: int = 4, **kwargs: Any) -> list[str]:
    """``count`` runs submitted by ``threads`` concurrent writers."""
    ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for _ in range(n):
            run = client.submit("hello", **kwargs)
            with lock:
                ids.append(run["run_id"])

    workers = [threading.Thread(target=work, args=(count // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    return ids


@pytest.mark.timeout(240)
def test_watch_sees_every_change_once_in_order_even_when_killed_and_resumed(
    dagd: DagdProcess, defs_file: pathlib.Path, storage_yaml: str, client: Any
) -> None:
    dagd.write_config(storage_yaml)
    dagd.start("-f", str(defs_file))
    client.set_queue_paused(True)  # the runs stay QUEUED until we cancel them or resume the queue
    first = Watcher(dagd.home, "--from-beginning")
    ran = [client.submit("hello")["run_id"] for _ in range(3)]
    queued: list[str] = []
    writers = threading.Thread(target=lambda: queued.extend(submit_many(client, 200, tags={"batch": "x"})))
    writers.start()
    wait_for(lambda: len(first.lines) >= 100, 60, "the watcher to see 100 changes")
    first.proc.kill()  # mid-way, while the writers write, without a goodbye
    first.stop()
    second = Watcher(dagd.home, "--cursor", first.lines[-1]["cursor"])
    writers.join(timeout=120)
    assert len(queued) == 200
    canceled, _ = client.terminate_runs(statuses=["QUEUED"], tags={"batch": "x"})
    assert sorted(canceled) == sorted(queued)
    client.set_queue_paused(False)
    ids = ran + queued
    wait_for(
        lambda: all(client.get_run(r)[0]["status"] in FINISHED for r in ran), 120, "the 3 runs to finish"
    )
    expected = status_events(client, ids)
    assert all(expected[r] == ["QUEUED", "CANCELED"] for r in queued)
    assert all(expected[r][-1] == "SUCCESS" for r in ran)
    wait_for(lambda: seen(first.lines + second.lines) == expected, 30, "the watchers to see every change")
    assert second.stop() == 130, "Ctrl-C ends a watch with 130"
    both = first.lines + second.lines
    keys = [(line["run_id"], line["event_id"]) for line in both]
    assert len(keys) == len(set(keys)), "no change seen twice"
    assert seen(both) == expected
