"""Issue #20's submission figures: batch submission (SubmitRuns) and 8 concurrent single submitters.

    python scripts/bench/bench_batch.py [--backend sqlite|postgres|both] [--runs 10000] [--rounds 5]
                                        [--clients 8] [--seconds 5] [--json FILE]

- batch: one SubmitRuns call of ``--runs`` runs (each with two tags, like a backfill's partition
  tags), answered with run ids only; runs/s = runs / the call's wall time, median of ``--rounds``.
  Targets: >= 20,000 runs/s.
- concurrent: ``--clients`` client *processes* (so the client side's GIL is not what is
  measured), each submitting one run per call for ``--seconds``; the sum of their rates, median
  of ``--rounds``. Target: >= 1,000 runs/s.

The queue launches nothing (max_concurrent_runs: 0): this measures the API and storage.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import address, running_supervisor, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402

CONFIG = "run_coordinator:\n  config:\n    max_concurrent_runs: 0\n"


def batch_rate(home: pathlib.Path, runs: int, round_no: int) -> float:
    entries = [{"tags": {"partition": f"{round_no}-{i}", "backfill": "bench"}} for i in range(runs)]
    with Client(address(home), timeout=300) as client:
        client.submit("noop")  # a warm channel: the figure is the call, not the connection
        start = time.perf_counter()
        ids = client.submit_many(entries, job_name="noop", run_ids_only=True)
        elapsed = time.perf_counter() - start
    assert len(ids) == runs
    return runs / elapsed


def _submitter(addr: str, ready: Any, go: Any, stop: Any, out: Any) -> None:
    count = 0
    with Client(addr) as client:
        client.submit("noop")  # connected and warm before the clock starts
        ready.put(1)
        go.wait()
        while not stop.is_set():
            client.submit("noop")
            count += 1
    out.put(count)


def concurrent_rate(home: pathlib.Path, clients: int, seconds: float) -> float:
    """Every client process started and connected first (a loaded machine takes seconds to start
    eight Pythons), then one window of ``seconds`` timed by this process's monotonic clock."""
    ctx = multiprocessing.get_context("spawn")
    ready, out, go, stop = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(target=_submitter, args=(address(home), ready, go, stop, out)) for _ in range(clients)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    go.set()
    start = time.monotonic()
    time.sleep(seconds)
    stop.set()
    elapsed = time.monotonic() - start
    # A call in flight when stop was set still counts; it ended within its own short latency.
    total = sum(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    return total / elapsed


def loadavg() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--skip", choices=["batch", "concurrent"], action="append", default=[])
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, dict] = {}
    for backend in backends:
        out = results.setdefault(backend, {})
        with running_supervisor(CONFIG, backend) as home:
            if "batch" not in args.skip:
                rates, loads = [], []
                for i in range(args.rounds):
                    rates.append(batch_rate(home, args.runs, i))
                    loads.append(loadavg())
                out["batch"] = {
                    "runs": args.runs,
                    "median": statistics.median(rates),
                    "rounds": rates,
                    "load1": loads,
                }
                print(
                    f"[{backend}] batch of {args.runs:,}: {statistics.median(rates):,.0f} runs/s "
                    f"(median of {args.rounds}: {', '.join(f'{r:,.0f}' for r in rates)}; "
                    f"load {statistics.median(loads):.2f})"
                )
            if "concurrent" not in args.skip:
                rates, loads = [], []
                for _ in range(args.rounds):
                    rates.append(concurrent_rate(home, args.clients, args.seconds))
                    loads.append(loadavg())
                out["concurrent"] = {
                    "clients": args.clients,
                    "median": statistics.median(rates),
                    "rounds": rates,
                    "load1": loads,
                }
                print(
                    f"[{backend}] {args.clients} client processes, one run a call: "
                    f"{statistics.median(rates):,.0f} runs/s (median of {args.rounds}: "
                    f"{', '.join(f'{r:,.0f}' for r in rates)}; load {statistics.median(loads):.2f})"
                )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
