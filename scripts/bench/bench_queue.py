"""Run queue figures: submit -> launch latency, launch throughput, bulk cancel, selection pass.

    python scripts/bench/bench_queue.py [--backend sqlite|postgres|both] [--latency-runs 100]
                                        [--throughput-runs 2000] [--cancel-runs 5000] [--only PART]...

1. Latency: a real supervisor with the default queue (free capacity) and the local launcher; the
   time from just before the client's submit call to the run's STARTING event (written by the
   run_queue daemon when it claims the run). One run at a time, each finished before the next.
   Target: p50 <= 50 ms.
2. Throughput: ``max_concurrent_runs: -1`` and :class:`bench_launchers.NoopLauncher` (no process
   per run), the queue paused while N runs are inserted straight into storage, then resumed;
   runs/s from the resume call until every run is STARTING. Target: >= 500 runs/s.
3. Bulk cancel: N queued runs (``max_concurrent_runs: 0``) canceled by
   ``dagctl runs terminate --status QUEUED``, wall time of the whole command (Python start-up
   included), and of the same request over gRPC from a warm client.
4. The selection pass: ``bench_selection.py``'s own figures.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

BENCH_DIR = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parents[1]))
sys.path.insert(0, str(BENCH_DIR))

import sqlalchemy as sa  # noqa: E402
from common import address, distribution, running_supervisor, summary_ms, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402
from dagd.instance.instance import Instance  # noqa: E402
from dagd.runs.model import RunStatus  # noqa: E402
from dagd.storage import Storage  # noqa: E402
from dagd.storage.runs import NewRun  # noqa: E402
from dagd.storage.schema import run_events  # noqa: E402
from dagd.timefmt import as_utc  # noqa: E402

PARTS = ["latency", "throughput", "cancel", "selection"]
NOOP_LAUNCHER = "run_launcher:\n  module: bench_launchers\n  class: NoopLauncher\n"
BENCH_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))}


def queue(max_concurrent_runs: int) -> str:
    return f"run_coordinator:\n  config:\n    max_concurrent_runs: {max_concurrent_runs}\n"


@contextmanager
def storage_of(home: pathlib.Path) -> Iterator[Storage]:
    """The supervisor's storage, opened by this process (for bulk inserts and counting)."""
    instance = Instance.load(home, create=False)
    try:
        yield instance.storage
    finally:
        instance.close()


def insert_queued(storage: Storage, count: int) -> list[str]:
    new = NewRun(job_name="noop", tags={"bench": "1"}, run_config={}, priority=0, status=RunStatus.QUEUED)
    run_ids: list[str] = []
    for start in range(0, count, 500):
        run_ids += [run.run_id for run in storage.runs.create_many([new] * min(500, count - start))]
    return run_ids


def starting_span(storage: Storage, run_ids: list[str]) -> float:
    """Seconds between the first and the last STARTING event of these runs."""
    at = run_events.c.at
    first, last = None, None
    with storage.read() as conn:
        for start in range(0, len(run_ids), 500):
            query = sa.select(sa.func.min(at), sa.func.max(at)).where(
                run_events.c.status == RunStatus.STARTING.value,
                run_events.c.run_id.in_(run_ids[start : start + 500]),
            )
            low, high = (as_utc(t) for t in conn.execute(query).one())
            assert low is not None and high is not None
            first = low if first is None else min(first, low)
            last = high if last is None else max(last, high)
    assert first is not None and last is not None
    return (last - first).total_seconds()


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# -- 1. latency ----------------------------------------------------------------------------------


def latency(home: pathlib.Path, runs: int) -> list[float]:
    client = Client(address(home))
    samples = []
    for _ in range(runs):
        t0 = time.time()
        run_id = client.submit("noop")["run_id"]
        deadline = time.monotonic() + 30
        while True:
            run, events = client.get_run(run_id)
            starting = [e for e in events if e["status"] == "STARTING"]
            if starting:
                samples.append(parse_time(starting[0]["at"]) - t0)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} did not reach STARTING: {run['status']}")
            time.sleep(0.002)
        while client.get_run(run_id)[0]["status"] not in ("SUCCESS", "FAILURE"):
            time.sleep(0.005)  # one run at a time: the next submit finds the queue idle
    client.close()
    return samples


# -- 2. throughput -------------------------------------------------------------------------------


def throughput(home: pathlib.Path, count: int) -> tuple[float, float]:
    """(runs/s from resume to all STARTING, runs/s between the first and last STARTING event)."""
    client = Client(address(home))
    client.set_queue_paused(True)
    with storage_of(home) as storage:
        before = storage.runs.count_by_status().get(RunStatus.STARTING, 0)  # earlier rounds' runs
        run_ids = insert_queued(storage, count)
        t0 = time.monotonic()
        client.set_queue_paused(False)
        deadline = t0 + 120
        while storage.runs.count_by_status().get(RunStatus.STARTING, 0) < before + count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all runs launched: {storage.runs.count_by_status()}")
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        span = starting_span(storage, run_ids)
    client.close()
    return count / elapsed, (count - 1) / span if span > 0 else float("inf")


# -- 3. bulk cancel ------------------------------------------------------------------------------


def bulk_cancel(home: pathlib.Path, count: int) -> tuple[float, float]:
    """(dagctl wall seconds, warm gRPC client seconds) to cancel ``count`` queued runs."""
    with storage_of(home) as storage:
        insert_queued(storage, count)
        env = {**os.environ, "DAGD_HOME": str(home)}
        t0 = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "dagd.client.cli", "runs", "terminate", "--status", "QUEUED"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        cli_seconds = time.monotonic() - t0
        if not result.stdout.startswith(f"canceled {count} run(s)"):
            raise RuntimeError(f"unexpected answer: {result.stdout!r}")
        insert_queued(storage, count)
        with Client(address(home)) as client:
            client.queue_status()  # connect first
            t0 = time.monotonic()
            canceled, _ = client.terminate_runs(statuses=["QUEUED"])
            grpc_seconds = time.monotonic() - t0
        if len(canceled) != count:
            raise RuntimeError(f"canceled {len(canceled)} of {count}")
    return cli_seconds, grpc_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--latency-runs", type=int, default=100)
    parser.add_argument("--throughput-runs", type=int, default=2000)
    parser.add_argument("--cancel-runs", type=int, default=5000)
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="Run only this part (repeatable); default all."
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    parts = args.only or PARTS
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        if "latency" in parts:
            with running_supervisor("", backend) as home:
                latency(home, 5)  # warm-up: starts the fork server
                samples = latency(home, args.latency_runs)
                results.setdefault(backend, {})["launch_latency_ms"] = distribution(samples, 1000)
                print(f"[{backend}] submit -> STARTING, free capacity: {summary_ms(samples)}", flush=True)
        if "throughput" in parts:
            with running_supervisor(queue(-1) + NOOP_LAUNCHER, backend, extra_env=BENCH_ENV) as home:
                throughput(home, 50)  # warm-up
                rate, event_rate = throughput(home, args.throughput_runs)
                results.setdefault(backend, {})["launch_throughput"] = {
                    "runs": args.throughput_runs,
                    "runs_per_s": rate,
                    "event_runs_per_s": event_rate,
                }
                print(
                    f"[{backend}] launch throughput, no-op launcher, {args.throughput_runs} queued runs: "
                    f"{rate:,.0f} runs/s from resume to all STARTING ({event_rate:,.0f} runs/s between the "
                    "first and last STARTING event)",
                    flush=True,
                )
        if "cancel" in parts:
            with running_supervisor(queue(0), backend) as home:
                cli_seconds, grpc_seconds = bulk_cancel(home, args.cancel_runs)
                results.setdefault(backend, {})["bulk_cancel"] = {
                    "runs": args.cancel_runs,
                    "cli_s": cli_seconds,
                    "grpc_s": grpc_seconds,
                }
                print(
                    f"[{backend}] bulk cancel of {args.cancel_runs} queued runs: `dagctl runs terminate "
                    f"--status QUEUED` {cli_seconds * 1000:,.0f} ms wall; over gRPC from a warm client "
                    f"{grpc_seconds * 1000:,.0f} ms",
                    flush=True,
                )
    write_json(args.json, results)
    if "selection" in parts:
        subprocess.run([sys.executable, str(BENCH_DIR / "bench_selection.py")], check=True)


if __name__ == "__main__":
    main()
