"""Benchmark of the run queue's dequeue choice (:func:`dagd.runs.selection.select_runs`).

One pass over 10,000 queued runs, 1,000 in progress and 5 tag limits of every kind, repeated; prints
the median and p99 wall time. The target is well under 100 ms per pass in CPython.

    python scripts/bench/bench_selection.py [--repeat 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path

# Runnable from anywhere without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dagd.runs.selection import (  # noqa: E402
    InProgressRun,
    QueuedRun,
    TagLimit,
    select_runs,
)

N_QUEUED = 10_000
N_IN_PROGRESS = 1_000
MAX_CONCURRENT_RUNS = 1_100

TAG_LIMITS = [
    TagLimit("database", "redshift", False, 40),
    TagLimit("dagd/backfill", None, False, 300),
    TagLimit("use-case", None, True, 30),
    TagLimit("team", "ml", False, 60),
    TagLimit("region", None, True, 200),
]


def _tags(rng: random.Random) -> dict[str, str]:
    tags = {"dagd/job": f"job_{rng.randrange(200)}", "owner": f"user_{rng.randrange(50)}"}
    if rng.random() < 0.3:
        tags["database"] = rng.choice(["redshift", "postgres", "snowflake"])
    if rng.random() < 0.4:
        tags["dagd/backfill"] = f"bf_{rng.randrange(20)}"
    if rng.random() < 0.5:
        tags["use-case"] = f"uc_{rng.randrange(40)}"
    if rng.random() < 0.3:
        tags["team"] = rng.choice(["ml", "bi", "infra"])
    if rng.random() < 0.6:
        tags["region"] = rng.choice(["eu", "us", "ap"])
    return tags


def build(seed: int) -> tuple[list[QueuedRun], list[InProgressRun]]:
    rng = random.Random(seed)
    in_progress = [InProgressRun(f"ip-{i}", _tags(rng)) for i in range(N_IN_PROGRESS)]
    queued = [QueuedRun(f"q-{i}", i, rng.choice([-1, 0, 0, 0, 1, 3]), _tags(rng)) for i in range(N_QUEUED)]
    rng.shuffle(queued)  # storage order need not be submission order
    return queued, in_progress


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def _time(
    queued: list[QueuedRun], in_progress: list[InProgressRun], cap: int, repeat: int
) -> tuple[list[float], list[float], int]:
    """Wall and CPU milliseconds per pass, each sorted. CPU time is the steadier figure on a shared
    machine; wall time is what the daemon's pass actually takes."""
    wall_ms: list[float] = []
    cpu_ms: list[float] = []
    launched = 0
    for _ in range(repeat):
        # Start each pass with the last one's garbage collected, as the daemon does between passes
        # seconds apart; the collector stays on while timing.
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        selection = select_runs(queued, in_progress, cap, TAG_LIMITS)
        cpu_ms.append((time.process_time() - cpu) * 1000)
        wall_ms.append((time.perf_counter() - wall) * 1000)
        launched = len(selection.to_launch)
    return sorted(wall_ms), sorted(cpu_ms), launched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    queued, in_progress = build(args.seed)
    print(
        f"select_runs: {N_QUEUED} queued, {N_IN_PROGRESS} in progress, {len(TAG_LIMITS)} tag limits, "
        f"{args.repeat} repetitions"
    )
    # The second case is the slow one: no global cap, so every queued run is walked and explained
    # by its tag limits alone.
    for label, cap in (
        (f"max_concurrent_runs {MAX_CONCURRENT_RUNS}", MAX_CONCURRENT_RUNS),
        ("no cap (-1)", -1),
    ):
        wall_ms, cpu_ms, launched = _time(queued, in_progress, cap, args.repeat)
        print(
            f"  {label:<26} launched {launched:>5}"
            f"   wall median {statistics.median(wall_ms):6.1f} ms  p99 {_percentile(wall_ms, 0.99):6.1f} ms"
            f"   cpu median {statistics.median(cpu_ms):6.1f} ms  p99 {_percentile(cpu_ms, 0.99):6.1f} ms"
        )


if __name__ == "__main__":
    main()
