"""Wall time of short ``dagctl`` commands, start-up included: what a liveness probe or a shell loop pays.

    python scripts/bench/bench_cli.py [--samples 30] [--backend sqlite|postgres] [--json PATH]

Starts a supervisor on a temporary home (SQLite by default), submits a few runs, then times
``dagctl daemons status`` and ``dagctl runs list`` as a user runs them: the ``dagctl`` console
script of the venv, a fresh process each time, output to a pipe. Samples alternate between the
commands, after two warm-up calls each (the first calls fill the page cache and ``__pycache__``;
``PYTHONDONTWRITEBYTECODE`` is removed from their environment, as on a user's machine).
Prints the median, p90 and min in milliseconds; the target (issue 18) is a median of at most 120 ms.

``--importtime`` also prints the 15 slowest imports of one ``dagctl runs list`` (``-X importtime``),
which is where the start-up goes.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import distribution, running_supervisor, write_json  # noqa: E402

DAGCTL = pathlib.Path(sys.executable).with_name("dagctl")
COMMANDS = {"daemons status": ["daemons", "status"], "runs list": ["runs", "list"]}


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(DAGCTL), *argv], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"dagctl {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def slowest_imports(argv: list[str], env: dict[str, str], count: int = 15) -> list[tuple[int, str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(DAGCTL), *argv], env=env, capture_output=True, text=True
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            rows.append((int(cumulative), name))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()

    with running_supervisor("", backend=args.backend) as home:
        # As a user runs it: byte code cached in __pycache__ (a test environment may turn that off).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["DAGD_HOME"] = str(home)
        for _ in range(5):
            subprocess.run([str(DAGCTL), "submit", "noop"], env=env, check=True, capture_output=True)
        for argv in COMMANDS.values():
            timed(argv, env)
            timed(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.samples):
            for name, argv in COMMANDS.items():
                samples[name].append(timed(argv, env))
        if args.importtime:
            print("slowest imports of `dagctl runs list` (cumulative us, module):")
            for micros, module in slowest_imports(COMMANDS["runs list"], env):
                print(f"  {micros:>8}  {module}")

    print(f"dagctl wall time, {args.samples} samples each ({args.backend}, load {os.getloadavg()[0]:.1f}):")
    results = {}
    for name, values in samples.items():
        ms = sorted(v * 1000 for v in values)
        print(f"  {name:<15} median {statistics.median(ms):6.1f} ms  p90 {ms[int(0.9 * (len(ms) - 1))]:6.1f} ms"
              f"  min {ms[0]:6.1f} ms")  # fmt: skip
        results[name] = distribution(values, 1000)
    write_json(args.json_path, {"backend": args.backend, "commands": results})


if __name__ == "__main__":
    main()
