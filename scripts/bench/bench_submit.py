"""Submit throughput over gRPC (1 and 8 client threads) and submit -> first line of user code.

    python scripts/bench/bench_submit.py [--backend sqlite|postgres|both] [--seconds 5] [--latency-runs 30]

Throughput uses max_concurrent_runs: 0 so nothing launches: it measures the control plane and
storage. Latency uses the default queue with free capacity and a job whose first line logs the
wall time; latency = that time - the moment before the client's submit call.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import address, distribution, running_supervisor, summary_ms, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402


def throughput(home: pathlib.Path, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        client = Client(address(home))
        while time.monotonic() < stop:
            client.submit("noop")
            counts[index] += 1
        client.close()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.monotonic() - start)


def latency(home: pathlib.Path, runs: int) -> list[float]:
    client = Client(address(home))
    samples = []
    for _ in range(runs):
        t0 = time.time()
        run = client.submit("first_line")
        deadline = time.monotonic() + 30
        while True:
            lines, _, status = client.read_logs(run["run_id"])
            hit = next((ln for ln in lines if ln["message"].startswith("t=")), None)
            if hit:
                samples.append(float(hit["message"][2:]) - t0)
                break
            if status in ("FAILURE", "CANCELED") or time.monotonic() > deadline:
                raise RuntimeError(f"run {run['run_id']} ended {status} without its first line")
            time.sleep(0.005)
        # Wait for the run to finish so runs do not overlap and skew each other.
        while client.get_run(run["run_id"])[0]["status"] not in ("SUCCESS", "FAILURE"):
            time.sleep(0.005)
    client.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (the median is kept)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, dict] = {}
    for backend in backends:
        out = results.setdefault(backend, {"throughput": {}})
        with running_supervisor("run_coordinator:\n  config:\n    max_concurrent_runs: 0\n", backend) as home:
            for threads in (1, 8):
                rates = [throughput(home, threads, args.seconds) for _ in range(args.rounds)]
                rate = statistics.median(rates)
                out["throughput"][str(threads)] = {"median": rate, "rounds": rates}
                print(
                    f"[{backend}] submit throughput, {threads} client thread(s): {rate:,.0f} runs/s "
                    f"(median of {args.rounds})"
                )
        with running_supervisor("", backend) as home:
            latency(home, 3)  # warm-up
            samples = latency(home, args.latency_runs)
            out["user_code_latency_ms"] = distribution(samples, 1000)
            print(f"[{backend}] submit -> first line of user code: {summary_ms(samples)}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
