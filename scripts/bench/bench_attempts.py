"""Frozen worker -> resumed: SIGSTOP a run's worker and time until its next attempt is STARTED.

    python scripts/bench/bench_attempts.py [--samples 10] [--timeout 3] [--backend sqlite|postgres]

A real supervisor (``daemon run``) with ``worker_heartbeat_timeout_seconds: --timeout`` and
resumes allowed. For each sample: submit ``resumable_sleeper``, wait until attempt 1 is STARTED
(polled over gRPC every 20 ms), SIGSTOP its worker (the watcher: its job fences itself), and time
until attempt 2 is STARTED; then SIGCONT the old watcher (it finds itself fenced and exits) and
terminate the run. Target (issue #14): median <= timeout + 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import address, running_supervisor, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402

POLL_SECONDS = 0.02


def wait_attempt(client: Client, run_id: str, attempt: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)[0]
        if run["status"] == "STARTED" and run["attempt"] == attempt:
            return run
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} never reached attempt {attempt} STARTED: {run}")
        time.sleep(POLL_SECONDS)


def frozen_to_resumed(samples: int, timeout: float, backend: str) -> list[float]:
    config = (
        f"run_monitoring:\n  worker_heartbeat_timeout_seconds: {timeout}\n"
        f"  max_resume_run_attempts: 1\n  poll_interval_seconds: 5\n"
    )
    out = []
    with running_supervisor(config, backend) as home, contextlib.closing(Client(address(home))) as client:
        for _ in range(samples):
            run_id = client.submit("resumable_sleeper", run_config={"seconds": 120})["run_id"]
            watcher = wait_attempt(client, run_id, 1)["attempts"][0]["pid"]
            os.kill(watcher, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                wait_attempt(client, run_id, 2)
                out.append(time.monotonic() - frozen)
            finally:
                os.kill(watcher, signal.SIGCONT)
            client.terminate(run_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    took = frozen_to_resumed(args.samples, args.timeout, args.backend)
    result = {
        "backend": args.backend,
        "timeout": args.timeout,
        "samples": len(took),
        "median": statistics.median(took),
        "max": max(took),
        "load_1m_before": load,
    }
    print(
        f"[{args.backend}] frozen worker -> attempt 2 STARTED, {len(took)} samples: median {result['median']:.2f}s,"
        f" max {result['max']:.2f}s (timeout {args.timeout:g}s, target <= {args.timeout + 2:g}s; load {load:.2f})"
    )
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
