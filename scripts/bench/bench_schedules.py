"""Schedule and sensor figures: tick latency at scale, sensor cadence, daemon memory over time.

    python scripts/bench/bench_schedules.py [--schedules 1000] [--sensors 1000] [--minutes 2]
        [--cadence-seconds 60] [--backend sqlite|postgres] [--only schedules|sensors]

1. Schedules: a generated definitions file with ``--schedules`` schedules on ``* * * * *``, RUNNING
   by default, each asking for one run of a noop job; ``max_concurrent_runs: 0`` so runs only
   queue. For each of the next ``--minutes`` minute boundaries M (a started schedule never fires
   for the past, so the first is the first boundary after start-up), read storage directly: how
   many ticks for M, and M -> the last tick's ``started_at``, M -> the last run's ``created_at``,
   M -> the last tick's ``ended_at``. Target: every tick of a minute recorded within 5 s of it.
2. Sensors: ``--sensors`` noop sensors at ``minimum_interval_seconds=1`` (half return a SkipReason,
   half nothing). Achieved cadence = evaluations per sensor per second over ``--cadence-seconds``,
   from the ticks stored in that window and from the sensor daemon's heartbeat ``evaluations``.
   Target: 1.0.
3. RSS of the scheduler daemon, the sensor daemon and the code server, just after start-up and
   after ``--minutes`` minutes of each phase.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import psutil
import sqlalchemy as sa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import running_supervisor, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402
from dagd.instance.instance import Instance  # noqa: E402
from dagd.storage.schema import run_tags, runs, ticks  # noqa: E402
from dagd.timefmt import as_utc, rfc3339  # noqa: E402

CONFIG = "run_coordinator:\n  config: {max_concurrent_runs: 0}\n"
TARGET_SECONDS = 5.0

SCHEDULES_DEFS = """
from dagd import Definitions, job, schedule


@job
def noop(context):
    pass


def make(i):
    @schedule(cron_schedule="* * * * *", job=noop, name=f"s{i:05d}", default_status="RUNNING")
    def every_minute(context):
        return None

    return every_minute


defs = Definitions(jobs=[noop], schedules=[make(i) for i in range(COUNT)])
"""

SENSORS_DEFS = """
from dagd import Definitions, SkipReason, job, sensor


@job
def noop(context):
    pass


def make(i):
    @sensor(job=noop, name=f"x{i:05d}", minimum_interval_seconds=1, default_status="RUNNING")
    def every_second(context):
        return SkipReason("nothing new") if i % 2 else None

    return every_second


defs = Definitions(jobs=[noop], sensors=[make(i) for i in range(COUNT)])
"""


# -- the running instance ------------------------------------------------------------------------


@contextmanager
def supervisor(defs_text: str, count: int, backend: str) -> Iterator[tuple[pathlib.Path, Instance]]:
    with tempfile.TemporaryDirectory(prefix="dagd-bench-defs-") as tmp:
        defs = pathlib.Path(tmp) / "many_defs.py"
        defs.write_text(defs_text.replace("COUNT", str(count)))
        began = time.monotonic()
        with running_supervisor(CONFIG, backend, defs=defs, ready_timeout=180) as home:
            print(f"  supervisor healthy after {time.monotonic() - began:.1f} s", file=sys.stderr)
            instance = Instance.load(home)
            try:
                yield home, instance
            finally:
                instance.close()


def roles(home: pathlib.Path) -> dict[str, psutil.Process]:
    """The scheduler, sensor and code-server processes of the running supervisor."""
    with Client.for_home(home) as client:
        found = {d["name"]: d["pid"] for d in client.daemon_status()["daemons"] if d["pid"]}
        for loc in client.instance_info()["code_locations"]:
            if loc["server"]["pid"]:
                found["code server"] = loc["server"]["pid"]
    return {r: psutil.Process(pid) for r, pid in found.items() if r in ("scheduler", "sensor", "code server")}


def rss_mb(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for role, proc in procs.items():
        try:
            out[role] = proc.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            out[role] = float("nan")
    return out


def cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for role, proc in procs.items():
        try:
            times = proc.cpu_times()
            out[role] = times.user + times.system
        except psutil.NoSuchProcess:
            out[role] = float("nan")
    return out


def daemon_status(home: pathlib.Path, name: str) -> dict[str, Any]:
    with Client.for_home(home) as client:
        return next(d for d in client.daemon_status()["daemons"] if d["name"] == name)


def heartbeat_info(home: pathlib.Path, name: str) -> dict[str, Any]:
    info: dict[str, Any] = daemon_status(home, name)["info"]
    return info


# -- 1. schedules --------------------------------------------------------------------------------


def minute_figures(instance: Instance, minute: datetime) -> dict[str, Any]:
    stamp = rfc3339(minute)
    with instance.storage.read() as conn:
        row = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.sum(sa.case((ticks.c.status == "SUCCESS", 1), else_=0)),
                sa.func.sum(sa.case((ticks.c.status == "STARTED", 1), else_=0)),
                sa.func.max(ticks.c.started_at),
                sa.func.max(ticks.c.ended_at),
            ).where(ticks.c.kind == "schedule", ticks.c.scheduled_time == minute)
        ).one()
        made = sa.select(run_tags.c.run_id).where(
            run_tags.c.key == "dagd/scheduled_time", run_tags.c.value == stamp
        )
        run_row = conn.execute(
            sa.select(sa.func.count(), sa.func.max(runs.c.created_at)).where(runs.c.run_id.in_(made))
        ).one()
    count, succeeded, unfinished, last_started, last_ended = row
    runs_count, last_run = run_row

    def after(value: Any) -> float | None:
        at = as_utc(value)
        return None if at is None else (at - minute).total_seconds()

    return {
        "ticks": count,
        "success": int(succeeded or 0),
        "unfinished": int(unfinished or 0),
        "last_started": after(last_started),
        "last_ended": after(last_ended),
        "runs": runs_count,
        "last_run": after(last_run),
    }


def bench_schedules(count: int, minutes: int, backend: str) -> dict[str, Any]:
    with supervisor(SCHEDULES_DEFS, count, backend) as (home, instance):
        procs = roles(home)
        rss_start = rss_mb(procs)
        cpu_start = cpu_seconds(procs)
        started = datetime.now(timezone.utc)
        first = started.replace(second=0, microsecond=0) + timedelta(minutes=1)
        results = []
        for index in range(minutes):
            minute = first + timedelta(minutes=index)
            deadline = minute + timedelta(seconds=58)
            while True:
                figures = minute_figures(instance, minute)
                if figures["ticks"] >= count and not figures["unfinished"] and figures["runs"] >= count:
                    break
                if datetime.now(timezone.utc) > deadline:
                    break
                time.sleep(0.25)
            figures["minute"] = minute
            results.append(figures)
            print(f"  minute {minute:%H:%M}: {figures}", file=sys.stderr)
        status = daemon_status(home, "scheduler")
        return {
            "restarts": status["restarts_by_reason"],
            "minutes": results,
            "rss_start": rss_start,
            "rss_end": rss_mb(procs),
            "cpu": {r: cpu_seconds(procs)[r] - cpu_start[r] for r in procs},
            "elapsed": (datetime.now(timezone.utc) - started).total_seconds(),
        }


# -- 2. sensors ----------------------------------------------------------------------------------


def sensor_ticks(instance: Instance, since: datetime | None = None) -> int:
    query = sa.select(sa.func.count()).where(ticks.c.kind == "sensor")
    if since is not None:
        query = query.where(ticks.c.started_at >= since)
    with instance.storage.read() as conn:
        return int(conn.execute(query).scalar_one())


def bench_sensors(count: int, minutes: float, window: float, backend: str) -> dict[str, Any]:
    with supervisor(SENSORS_DEFS, count, backend) as (home, instance):
        procs = roles(home)
        rss_start = rss_mb(procs)
        began = time.monotonic()
        # Warm up: every sensor has been evaluated once (its state row exists, its pool is busy).
        while sensor_ticks(instance) < count and time.monotonic() - began < 60:
            time.sleep(0.5)
        warm = time.monotonic() - began
        cpu_start = cpu_seconds(procs)
        evaluations_start = heartbeat_info(home, "sensor").get("evaluations", 0)
        window_start = datetime.now(timezone.utc)
        time.sleep(window)
        window_end = datetime.now(timezone.utc)
        evaluations_end = heartbeat_info(home, "sensor").get("evaluations", 0)
        cpu = {r: cpu_seconds(procs)[r] - cpu_start[r] for r in procs}
        seconds = (window_end - window_start).total_seconds()
        with instance.storage.read() as conn:
            stored = int(
                conn.execute(
                    sa.select(sa.func.count()).where(
                        ticks.c.kind == "sensor",
                        ticks.c.started_at >= window_start,
                        ticks.c.started_at < window_end,
                    )
                ).scalar_one()
            )
            failed = conn.execute(
                sa.select(ticks.c.error, sa.func.count())
                .where(ticks.c.kind == "sensor", ticks.c.status == "FAILURE")
                .group_by(ticks.c.error)
                .order_by(sa.func.count().desc())
            ).all()
        failures = sum(n for _, n in failed)
        for error, n in failed[:3]:
            print(f"  {n} failed ticks: {error}", file=sys.stderr)
        # Memory over the rest of the run, once a minute (is it flat, or does it grow?).
        samples = [(time.monotonic() - began, rss_mb(procs))]
        while time.monotonic() - began < minutes * 60:
            time.sleep(min(60.0, max(0.0, minutes * 60 - (time.monotonic() - began))))
            samples.append((time.monotonic() - began, rss_mb(procs)))
        return {
            "rss_samples": samples,
            "restarts": daemon_status(home, "sensor")["restarts_by_reason"],
            "warm_up": warm,
            "window": seconds,
            "cadence_ticks": stored / count / seconds,
            "cadence_heartbeat": (evaluations_end - evaluations_start) / count / seconds,
            "failures": failures,
            "cpu": {r: v / seconds for r, v in cpu.items()},
            "rss_start": rss_start,
            "rss_end": rss_mb(procs),
            "elapsed": time.monotonic() - began,
        }


# -- report --------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument(
        "--minutes", type=int, default=2, help="minute boundaries observed; sensor phase length"
    )
    parser.add_argument("--cadence-seconds", type=float, default=60)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--only", choices=["schedules", "sensors"], default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {"backend": args.backend, "load_start": os.getloadavg()[0]}

    load = os.getloadavg()[0]
    print(
        f"\n### Schedules and sensors ({args.backend}, {os.cpu_count()} CPUs, load {load:.1f}, "
        f"Python {sys.version.split()[0]})\n"
    )
    if args.only in (None, "schedules"):
        s = bench_schedules(args.schedules, args.minutes, args.backend)
        results["schedules"] = {"count": args.schedules, **s}
        print(f"{args.schedules} schedules on `* * * * *`, runs queued only:\n")
        print(
            "| minute | ticks (SUCCESS) | runs | M -> last tick started | M -> last run created | M -> last tick ended |"
        )
        print("|---|---|---|---|---|---|")
        for m in s["minutes"]:
            print(
                f"| {m['minute']:%H:%M} | {m['ticks']} ({m['success']}) | {m['runs']} | "
                f"{fmt(m['last_started'])} | {fmt(m['last_run'])} | {fmt(m['last_ended'])} |"
            )
        ok = all(
            m["ticks"] >= args.schedules
            and m["last_started"] is not None
            and m["last_started"] <= TARGET_SECONDS
            for m in s["minutes"]
        )
        print(f"\nall ticks of every minute recorded within {TARGET_SECONDS:g} s: {'yes' if ok else 'NO'}")
        print(f"scheduler restarts: {s['restarts'] or 'none'}")
        print(f"CPU over {s['elapsed']:.0f} s: " + ", ".join(f"{r} {v:.1f} s" for r, v in s["cpu"].items()))
        print(
            "RSS start -> end: "
            + ", ".join(f"{r} {s['rss_start'][r]:.0f} -> {s['rss_end'][r]:.0f} MB" for r in s["rss_start"])
            + "\n"
        )
    if args.only in (None, "sensors"):
        n = bench_sensors(args.sensors, args.minutes, args.cadence_seconds, args.backend)
        results["sensors"] = {"count": args.sensors, **n}
        print(f"{args.sensors} sensors at minimum_interval_seconds=1:\n")
        print("| measure | result | target |")
        print("|---|---|---|")
        print(
            f"| cadence (stored ticks) over {n['window']:.0f} s | {n['cadence_ticks']:.3f} /sensor/s | 1.0 |"
        )
        print(f"| cadence (heartbeat evaluations) | {n['cadence_heartbeat']:.3f} /sensor/s | 1.0 |")
        print(f"| warm-up (every sensor ticked once) | {n['warm_up']:.1f} s | |")
        print(f"| failed ticks | {n['failures']} | 0 |")
        print(f"| sensor daemon restarts | {n['restarts'] or 'none'} | none |")
        for role, share in n["cpu"].items():
            print(f"| CPU {role} | {share * 100:.0f} % of a core | |")
        print(
            "\nRSS start -> after {:.0f} s: ".format(n["elapsed"])
            + ", ".join(f"{r} {n['rss_start'][r]:.0f} -> {n['rss_end'][r]:.0f} MB" for r in n["rss_start"])
        )
        print(
            "RSS (MB) over time: "
            + "; ".join(
                f"{at / 60:.0f} min: " + ", ".join(f"{r} {v:.0f}" for r, v in rss.items())
                for at, rss in n["rss_samples"]
            )
        )

    write_json(args.json, results)


if __name__ == "__main__":
    main()
