"""Supervisor figures: crash and hang recovery times, idle CPU and memory of the process tree.

    python scripts/bench/bench_supervisor.py [--samples 20] [--idle-seconds 30] [--backend sqlite|postgres]

1. SIGKILL of a daemon -> a healthy replacement (another pid, RUNNING, healthy), polled over gRPC
   every 20 ms; rotates over the four daemons and waits for all healthy between samples.
   ``restart.budget_window_seconds: 1`` makes every sample a first crash: with the default 60 s
   window, five kills of one daemon within a minute would measure the backoff doubling
   (0.5, 1, 2, 4, 8 s) instead of the supervisor. The backoff itself stays at its default 0.5 s.
2. SIGSTOP of a daemon -> a healthy replacement, with ``heartbeat_timeout_seconds: 3`` and
   ``heartbeat_interval_seconds: 0.5`` (the default 20 s timeout would make 20 samples take
   minutes). The overshoot beyond the timeout is what the supervisor controls.
3. CPU of the whole idle tree (supervisor, daemons, fork server) over ``--idle-seconds`` after a
   settle, as % of one core, per process and in total; default settings.
4. RSS (and PSS, which splits shared pages fairly) of the supervisor + daemons and of the fork
   server, after one warm-up run has started the fork server; default settings.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import address, distribution, percentile, running_supervisor, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402

NAMES = ("scheduler", "run_queue", "sensor", "run_monitoring")
POLL_SECONDS = 0.02
BACKOFF_SECONDS = 0.5  # RestartConfig.initial_backoff_seconds default
FIRST_CRASH = "daemons:\n  restart:\n    budget_window_seconds: 1\n"
HANG_TIMEOUT = 3.0
HANG = (
    "daemons:\n"
    f"  heartbeat_timeout_seconds: {HANG_TIMEOUT:g}\n"
    "  heartbeat_interval_seconds: 0.5\n"
    "  restart:\n    budget_window_seconds: 1\n"
)


# -- recovery ------------------------------------------------------------------------------------


def daemons(client: Client) -> dict[str, dict]:
    return {d["name"]: d for d in client.daemon_status()["daemons"]}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_SECONDS)


def all_healthy(client: Client) -> bool:
    return all(d["healthy"] for d in daemons(client).values())


def replacement_seconds(client: Client, name: str, sig: signal.Signals, timeout: float) -> float:
    """Signal ``name``'s process; seconds until the status shows a healthy daemon in another pid."""
    old = daemons(client)[name]["pid"]
    started = time.monotonic()
    os.kill(old, sig)
    while True:
        d = daemons(client)[name]
        if d["healthy"] and d["pid"] not in (None, old):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{name} not replaced within {timeout}s after {sig.name}: {d}")
        time.sleep(POLL_SECONDS)


def recovery(home: pathlib.Path, sig: signal.Signals, samples: int, timeout: float) -> list[float]:
    client = Client(address(home))
    out = []
    try:
        for i in range(samples):
            wait_until(lambda: all_healthy(client), 30, "every daemon healthy")
            # A random phase against the daemons' ping cadence, so SIGSTOP lands anywhere in it.
            time.sleep(random.uniform(0.2, 0.7))
            out.append(replacement_seconds(client, NAMES[i % len(NAMES)], sig, timeout))
    finally:
        client.close()
    return out


# -- idle cost -----------------------------------------------------------------------------------


@dataclass
class Member:
    role: str
    proc: psutil.Process


def tree(home: pathlib.Path) -> list[Member]:
    pid = json.loads((home / "supervisor.json").read_text())["pid"]
    supervisor = psutil.Process(pid)
    members = [Member("supervisor", supervisor)]
    for child in supervisor.children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "dagd.daemons" in cmd:
            role = cmd[cmd.index("dagd.daemons") + 1]
        elif "dagd.runs.local.forkserver" in cmd:
            role = "fork server"
        elif "dagd.codeserver" in cmd:
            role = "code server"
        else:
            role = "other: " + " ".join(cmd[:4])
        members.append(Member(role, child))
    return members


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def idle_cpu(home: pathlib.Path, settle: float, seconds: float) -> dict[str, float]:
    """% of one core per role over ``seconds``, after ``settle`` seconds of doing nothing."""
    time.sleep(settle)
    members = tree(home)
    before = {m.proc.pid: cpu_seconds(m.proc) for m in members}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    out: dict[str, float] = {}
    for m in members:
        try:
            used = cpu_seconds(m.proc) - before[m.proc.pid]
        except psutil.NoSuchProcess:
            continue
        out[m.role] = out.get(m.role, 0.0) + 100 * used / wall
    return out


def memory(home: pathlib.Path) -> dict[str, tuple[float, float]]:
    """(RSS MB, PSS MB) per role."""
    out: dict[str, tuple[float, float]] = {}
    for m in tree(home):
        info = m.proc.memory_full_info()
        rss, pss = out.get(m.role, (0.0, 0.0))
        out[m.role] = (rss + info.rss / 2**20, pss + getattr(info, "pss", info.rss) / 2**20)
    return out


def cold_start(samples: int = 5) -> list[float]:
    """A fresh interpreter importing what a daemon imports before its first status message."""
    code = "from dagd.daemons.registry import make_daemon; from dagd.instance.instance import Instance"
    out = []
    for _ in range(samples):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", code], check=True)
        out.append(time.monotonic() - started)
    return out


def warm_run(home: pathlib.Path) -> None:
    """One run, so the run queue's fork server exists, as it does on any instance that has run a job."""
    client = Client(address(home))
    try:
        run_id = client.submit("noop")["run_id"]
        wait_until(lambda: client.get_run(run_id)[0]["status"] == "SUCCESS", 30, f"run {run_id} to succeed")
    finally:
        client.close()


# -- report --------------------------------------------------------------------------------------


def seconds(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s, p90 {percentile(values, 90):.2f} s (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--samples", type=int, default=20, help="recoveries per signal")
    parser.add_argument("--settle", type=float, default=5)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    with running_supervisor("", args.backend) as home:
        warm_run(home)
        cpu = idle_cpu(home, args.settle, args.idle_seconds)
        mem = memory(home)
    imports = cold_start()
    with running_supervisor(FIRST_CRASH, args.backend) as home:
        killed = recovery(home, signal.SIGKILL, args.samples, timeout=30)
    # A 3 s heartbeat timeout on a loaded machine can take a while to see all four daemons healthy.
    with running_supervisor(HANG, args.backend, ready_timeout=120) as home:
        stopped = recovery(home, signal.SIGSTOP, args.samples, timeout=30)

    core = [role for role in mem if role == "supervisor" or role in NAMES]
    core_rss = sum(mem[r][0] for r in core)
    core_pss = sum(mem[r][1] for r in core)
    forks = [role for role in mem if role == "fork server"]
    fork_rss = sum(mem[r][0] for r in forks)
    fork_pss = sum(mem[r][1] for r in forks)
    others = [role for role in mem if role not in core and role not in forks]
    other_rss = sum(mem[r][0] for r in others)
    other_pss = sum(mem[r][1] for r in others)
    total_cpu = sum(cpu.values())
    write_json(
        args.json,
        {
            "backend": args.backend,
            "sigkill_recovery_s": distribution(killed),
            "sigstop_recovery_s": distribution(stopped),
            "hang_timeout_s": HANG_TIMEOUT,
            "cold_start_s": distribution(imports),
            "idle_seconds": args.idle_seconds,
            "idle_cpu_percent": {**cpu, "total": total_cpu},
            "rss_mb": {role: rss for role, (rss, _) in mem.items()},
            "pss_mb": {role: pss for role, (_, pss) in mem.items()},
            "core_rss_mb": core_rss,
            "core_pss_mb": core_pss,
        },
    )
    overshoot = [s - HANG_TIMEOUT for s in stopped]
    beyond_backoff = [s - BACKOFF_SECONDS for s in killed]

    print(
        f"\n### Supervisor benchmark ({args.backend}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]})\n"
    )
    print("| measure | result | target |")
    print("|---|---|---|")
    print(
        f"| SIGKILL -> healthy replacement | {seconds(killed)}; "
        f"beyond the {BACKOFF_SECONDS:g} s backoff: median {statistics.median(beyond_backoff):.2f} s | |"
    )
    print(
        f"| SIGSTOP -> healthy replacement (heartbeat timeout {HANG_TIMEOUT:g} s) | {seconds(stopped)}; "
        f"overshoot beyond the timeout: median {statistics.median(overshoot):.2f} s, "
        f"p90 {percentile(overshoot, 90):.2f} s | |"
    )
    print(
        f"| within both: a fresh interpreter + a daemon's imports | median {statistics.median(imports):.2f} s "
        f"(n={len(imports)}) | |"
    )
    print(
        f"| idle CPU, whole tree ({len(cpu)} processes, {args.idle_seconds:g} s) | "
        f"{total_cpu:.2f} % of one core | < 2 % |"
    )
    print(
        f"| RSS supervisor + {len(core) - 1} daemons | {core_rss:.0f} MB (PSS {core_pss:.0f} MB) | < 200 MB |"
    )
    print(f"| RSS fork server(s) ({len(forks)}) | {fork_rss:.0f} MB (PSS {fork_pss:.0f} MB) | |")
    if others:
        print(f"| RSS others ({', '.join(others)}) | {other_rss:.0f} MB (PSS {other_pss:.0f} MB) | |")
    print("\n| process | idle CPU % of one core | RSS MB | PSS MB |")
    print("|---|---|---|---|")
    for role in sorted(mem, key=lambda r: (r != "supervisor", r)):
        rss, pss = mem[role]
        print(f"| {role} | {cpu.get(role, 0.0):.2f} | {rss:.0f} | {pss:.0f} |")


if __name__ == "__main__":
    main()
