"""Process titles (#18 item 9): `ps` says what each of dagd's processes is.

A run worker (the watcher and the job it forks) is titled ``dagd run <run_id> <job>``, not the fork
server's command line it was forked from; a daemon ``dagd: <name>``. The title replaces the command
line, so every one of them still carries ``DAGD_HOME`` in its environment (setproctitle must not
clobber /proc/PID/environ): that is how the leftover checks and the chaos sampler find them.
"""

from __future__ import annotations

import json
import pathlib

import psutil
import pytest
from helpers.procs import DagdProcess, processes_for_home, wait_for

from dagd.client.client import Client
from dagd.processes import daemon_name, role_of

DEFS = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "attempt_defs.py"
NAMES = {"scheduler", "run_queue", "sensor", "run_monitoring"}


def title(pid: int) -> str:
    return " ".join(part for part in psutil.Process(pid).cmdline() if part)


def job_pid(c: Client, run_id: str) -> int:
    def find() -> int | None:
        for line in c.read_logs(run_id)[0]:
            if line["message"].startswith("attempt 1 job pid "):
                return int(line["message"].rsplit(" ", 1)[1])
        return None

    return wait_for(find, 20, f"run {run_id}'s job to log its pid")


def worker_pid(c: Client, run_id: str) -> int:
    def find() -> int | None:
        run, _ = c.get_run(run_id)
        attempts = run.get("attempts") or []
        return attempts[0]["pid"] if run["status"] == "STARTED" and attempts and attempts[0]["pid"] else None

    return wait_for(find, 20, f"run {run_id} to start")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fork_server", [True, False], ids=["forked", "spawned"])
def test_run_workers_and_daemons_carry_their_own_titles(dagd: DagdProcess, fork_server: bool) -> None:
    dagd.write_config(
        "run_launcher:\n  module: dagd.run_launcher\n  class: LocalProcessRunLauncher\n"
        f"  config: {{fork_server: {'true' if fork_server else 'false'}}}\n"
    )
    dagd.start("-f", str(DEFS))
    result = dagd.ctl("submit", "ticker", "--config", json.dumps({"seconds": 60}))
    assert result.code == 0, result.stderr
    run_id = result.stdout.strip()
    with Client.for_home(dagd.home) as c:
        watcher = worker_pid(c, run_id)
        job = job_pid(c, run_id)

    expected = f"dagd run {run_id} ticker"
    wait_for(lambda: title(watcher) == expected, 10, f"the watcher's title (now {title(watcher)!r})")
    assert title(job) == expected
    daemons = dagd.daemons()
    assert set(daemons) == NAMES
    for name, d in daemons.items():
        assert title(d["pid"]) == f"dagd: {name}"
        assert daemon_name(psutil.Process(d["pid"]).cmdline()) == name

    # The environment survives the title: DAGD_HOME says whose processes these are.
    home = str(dagd.home)
    for pid in (watcher, job, *(d["pid"] for d in daemons.values())):
        assert psutil.Process(pid).environ().get("DAGD_HOME") == home, pid
    found = {p.pid for p in processes_for_home(dagd.home)}
    assert {watcher, job, *(d["pid"] for d in daemons.values())} <= found

    # The fork server itself keeps its command line; what it forks is a worker.
    parent = psutil.Process(watcher).parent()
    if fork_server:
        assert parent is not None
        assert role_of(parent.cmdline(), parent.parent().cmdline()) == "fork server"
    assert role_of(psutil.Process(watcher).cmdline()) == "worker"
    assert role_of(psutil.Process(daemons["run_queue"]["pid"]).cmdline()) == "daemon"
