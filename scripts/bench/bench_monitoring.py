"""Run monitoring figures: how fast a dead worker's run fails, and what one pass costs at scale.

    python scripts/bench/bench_monitoring.py [--samples 20] [--runs 10000] [--passes 5]
                                             [--skip-death] [--skip-pass] [--backend sqlite|postgres|both]

1. Worker death -> FAILURE, real supervisor on SQLite, default settings (``poll_interval_seconds``
   5): submit ``sleeper``, wait until STARTED (polled over gRPC every 20 ms), SIGKILL its worker,
   and take the run's own ``ended_at`` (written by run monitoring) minus the moment of the kill.
   The run queue's fork server reports the exit and wakes run monitoring at once; the rest is the
   1 s confirmation grace (``FINISH_GRACE_SECONDS``) a worker gets to write its own result.
2. One monitoring pass (``RunMonitoringDaemon.run_iteration()``, in-process) with ``--runs`` runs
   STARTED, inserted straight into storage, each with this process as its worker (pid and real
   start time, so every run looks alive and none is acted on): the steady-state cost of a pass.
   One warm-up pass, then the median of ``--passes``; with the split between reading the runs
   and checking the workers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import psutil
import sqlalchemy as sa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import address, distribution, percentile, postgres_schema, running_supervisor, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402
from dagd.daemons.run_monitoring import RunMonitoringDaemon  # noqa: E402
from dagd.instance.instance import Instance  # noqa: E402
from dagd.runs.model import RunStatus  # noqa: E402
from dagd.storage.runs import NewRun  # noqa: E402
from dagd.storage.schema import run_attempts as attempts_table  # noqa: E402
from dagd.storage.schema import runs as runs_table  # noqa: E402
from dagd.timefmt import utcnow  # noqa: E402

POLL_SECONDS = 0.02
WATCHED = [RunStatus.STARTING, RunStatus.NOT_STARTED, RunStatus.STARTED, RunStatus.CANCELING]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_SECONDS)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- 1. worker death -> FAILURE --------------------------------------------------------------------


def run_reaching(client: Client, run_id: str, statuses: set[str], timeout: float = 30) -> dict:
    def reached() -> dict | None:
        run = client.get_run(run_id)[0]
        return run if run["status"] in statuses else None

    run = wait_until(reached, timeout, f"run {run_id} to reach {sorted(statuses)}")
    assert isinstance(run, dict)
    return run


def death_to_failure(samples: int, backend: str = "sqlite") -> list[float]:
    out = []
    with running_supervisor("", backend) as home, contextlib.closing(Client(address(home))) as client:
        for _ in range(samples):
            run_id = client.submit("sleeper", run_config={"seconds": 120})["run_id"]
            started = run_reaching(client, run_id, {"STARTED"})
            os.kill(started["worker_pid"], signal.SIGKILL)  # the watcher; its job dies with it
            killed = time.time()
            ended = run_reaching(client, run_id, {"FAILURE", "SUCCESS", "CANCELED"})
            if ended["status"] != "FAILURE" or "WORKER_DIED" not in (ended["error"] or ""):
                raise RuntimeError(f"expected FAILURE (WORKER_DIED), got {ended}")
            out.append(epoch(ended["ended_at"]) - killed)
    return out


# -- 2. one pass over many runs in progress --------------------------------------------------------


@contextlib.contextmanager
def instance_with_runs(backend: str, count: int) -> Iterator[Instance]:
    """An instance whose storage holds ``count`` STARTED runs, all 'worked' by this process."""
    with contextlib.ExitStack() as stack:
        home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dagd-bench-")))
        if backend == "postgres":
            url = stack.enter_context(postgres_schema())
            (home / "dagd.yaml").write_text(f"storage:\n  postgres:\n    url: '{url}'\n")
        instance = Instance.load(home)
        stack.callback(instance.close)
        store = instance.storage.runs
        for start in range(0, count, 1000):
            made = store.create_many(
                [NewRun("sleeper", {}, {}, 0, RunStatus.NOT_STARTED) for _ in range(min(1000, count - start))]
            )
            store.claim_many([r.run_id for r in made], expected=(RunStatus.NOT_STARTED,))
        # Every attempt claimed by this process (alive, heartbeating now): none is acted on.
        me = psutil.Process()
        with instance.storage.write() as conn:
            conn.execute(
                sa.update(attempts_table).values(
                    state="CLAIMED", worker=f"{socket.gethostname()}:{me.pid}", host=socket.gethostname(),
                    pid=me.pid, pid_started_at=me.create_time(), claimed_at=utcnow(), heartbeat_at=utcnow(),
                )
            )  # fmt: skip
            conn.execute(sa.update(runs_table).values(status="STARTED", started_at=utcnow()))
        yield instance


def one_pass(backend: str, count: int, passes: int) -> dict[str, float]:
    with instance_with_runs(backend, count) as instance:
        daemon = RunMonitoringDaemon(instance)
        daemon.run_iteration()  # warm-up: connections, imports
        assert daemon.info["watched"] == count and daemon.handled == 0, daemon.info
        timings = []
        for _ in range(passes):
            began = time.perf_counter()
            daemon.run_iteration()
            timings.append(time.perf_counter() - began)
        assert daemon.handled == 0, "a live run was acted on"
        reads, checks = [], []
        for _ in range(passes):
            began = time.perf_counter()
            _, watched = instance.storage.attempts.in_progress(WATCHED)
            reads.append(time.perf_counter() - began)
            began = time.perf_counter()
            for run, attempt in watched:
                assert attempt is not None
                instance.launcher.check_health(run, attempt)
            checks.append(time.perf_counter() - began)
        return {
            "pass": statistics.median(timings),
            "pass_max": max(timings),
            "read": statistics.median(reads),
            "check": statistics.median(checks),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20, help="worker deaths to time")
    parser.add_argument("--runs", type=int, default=10_000, help="runs in progress for the pass")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--skip-death", action="store_true")
    parser.add_argument("--skip-pass", action="store_true")
    parser.add_argument("--death-backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    results: dict[str, dict] = {}

    print(f"\n### Run monitoring benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})\n")
    print("| measure | result |")
    print("|---|---|")
    if not args.skip_death:
        deaths = death_to_failure(args.samples, args.death_backend)
        results["worker_death_to_failure_s"] = {"backend": args.death_backend, **distribution(deaths)}
        print(
            f"| SIGKILL of a worker -> FAILURE (SQLite, default settings) | median "
            f"{statistics.median(deaths):.2f} s, p90 {percentile(deaths, 90):.2f} s, "
            f"max {max(deaths):.2f} s (n={len(deaths)}) |"
        )
    if not args.skip_pass:
        backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
        for backend in backends:
            r = one_pass(backend, args.runs, args.passes)
            results.setdefault("pass", {})[backend] = {"runs": args.runs, **r}
            print(
                f"| one pass, {args.runs:,} runs STARTED ({backend}) | median {r['pass'] * 1000:.0f} ms "
                f"(max {r['pass_max'] * 1000:.0f} ms, n={args.passes}); of which reading the runs "
                f"{r['read'] * 1000:.0f} ms, checking the workers {r['check'] * 1000:.0f} ms |"
            )

    write_json(args.json, results)


if __name__ == "__main__":
    main()
