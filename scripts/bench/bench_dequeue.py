"""Dequeue pass time versus queue depth, on real storage.

    python scripts/bench/bench_dequeue.py [--backend sqlite|postgres|both] [--depths 100 1000 10000 100000]
                                          [--launch 100] [--passes 5] [--json PATH]

For each depth N: a fresh instance whose runs table holds N QUEUED runs (inserted with
``RunStore.create_many``, 1,000 per transaction, tags like a real workload's: a job tag, an owner,
and a database tag on a third of them), ``max_concurrent_runs: --launch`` and two tag limits, and
the no-op launcher of ``bench_launchers.py`` (claiming is real; no process is started). One pass
of the ``run_queue`` daemon (``RunQueueDaemon.run_iteration()``, in process) reads the queue view,
runs the selection and claims ``--launch`` runs QUEUED -> STARTING in its compare-and-set
transactions. Between passes the claimed runs are put back to QUEUED (not timed), so every pass
sees the same queue. Reported: the median pass, and the median of its read + selection part alone
(``QueueView.read`` + ``select``), so the claim's share is the difference.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator

import sqlalchemy as sa

BENCH_DIR = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parents[1]))
sys.path.insert(0, str(BENCH_DIR))

from common import postgres_schema, write_json  # noqa: E402

from dagd.daemons.run_queue import RunQueueDaemon  # noqa: E402
from dagd.instance.instance import Instance  # noqa: E402
from dagd.runs.model import RunStatus  # noqa: E402
from dagd.runs.queue import QueueView  # noqa: E402
from dagd.storage.runs import NewRun  # noqa: E402
from dagd.storage.schema import runs as runs_table  # noqa: E402

BATCH = 1000


def config(launch: int) -> str:
    return (
        "run_coordinator:\n"
        "  config:\n"
        f"    max_concurrent_runs: {launch}\n"
        "    tag_concurrency_limits:\n"
        "      - {key: database, value: redshift, limit: 10}\n"
        "      - {key: owner, value: {applyLimitPerUniqueValue: true}, limit: 20}\n"
        "run_launcher: {module: bench_launchers, class: NoopLauncher}\n"
    )


@contextlib.contextmanager
def instance_with_queue(backend: str, depth: int, launch: int) -> Iterator[tuple[Instance, float]]:
    """An instance with ``depth`` queued runs; and the seconds the fill took."""
    with contextlib.ExitStack() as stack:
        home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dagd-bench-")))
        text = config(launch)
        if backend == "postgres":
            url = stack.enter_context(postgres_schema())
            text = f"storage:\n  postgres:\n    url: '{url}'\n" + text
        (home / "dagd.yaml").write_text(text)
        instance = Instance.load(home)
        stack.callback(instance.close)
        began = time.perf_counter()
        for start in range(0, depth, BATCH):
            news = []
            for i in range(start, min(depth, start + BATCH)):
                tags = {"dagd/job": f"job_{i % 50}", "owner": f"user_{i % 30}"}
                if i % 3 == 0:
                    tags["database"] = "redshift"
                news.append(NewRun("noop", tags, {}, i % 4 - 1, RunStatus.QUEUED))
            instance.storage.runs.create_many(news)
        yield instance, time.perf_counter() - began


def requeue(instance: Instance) -> None:
    with instance.storage.write() as conn:
        conn.execute(
            sa.update(runs_table)
            .where(runs_table.c.status == RunStatus.STARTING.value)
            .values(status=RunStatus.QUEUED.value)
        )


def measure(backend: str, depth: int, launch: int, passes: int) -> dict[str, float]:
    with instance_with_queue(backend, depth, launch) as (instance, fill_seconds):
        daemon = RunQueueDaemon(instance)
        try:
            daemon.run_iteration()  # warm-up: connections, imports, statement caches
            requeue(instance)
            totals, reads = [], []
            launched = 0
            for _ in range(passes):
                began = time.perf_counter()
                view = QueueView.read(instance.storage)
                view.select(daemon.queue_config)
                reads.append(time.perf_counter() - began)
                began = time.perf_counter()
                daemon.run_iteration()
                totals.append(time.perf_counter() - began)
                launched = int(daemon.info.get("launched", 0))
                requeue(instance)
        finally:
            daemon.close()
    return {
        "depth": depth,
        "fill_s": fill_seconds,
        "pass_ms": statistics.median(totals) * 1000,
        "pass_max_ms": max(totals) * 1000,
        "read_select_ms": statistics.median(reads) * 1000,
        "launched_per_pass": launched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--depths", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    parser.add_argument("--launch", type=int, default=100, help="max_concurrent_runs: runs claimed per pass")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, list[dict[str, float]]] = {}
    print("| backend | queued runs | fill | one pass (median) | of which read + select | claimed per pass |")
    print("|---|---|---|---|---|---|")
    for backend in backends:
        for depth in args.depths:
            r = measure(backend, depth, args.launch, args.passes)
            results.setdefault(backend, []).append(r)
            print(
                f"| {backend} | {depth:,} | {r['fill_s']:.1f} s | {r['pass_ms']:.1f} ms "
                f"(max {r['pass_max_ms']:.1f}) | {r['read_select_ms']:.1f} ms | {r['launched_per_pass']:.0f} |",
                flush=True,
            )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
