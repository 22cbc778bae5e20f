"""Retention at scale: ``runs list`` over 1,000,000 runs, purge speed, and the database size under a
steady load with retention on.

    python scripts/bench/bench_retention.py [--backend sqlite|postgres|both] [--runs 1000000]
        [--steady-seconds 240] [--rate 20] [--keep-minutes 1] [--sample-seconds 5]
        [--vacuum-seconds 30] [--samples-file PATH] [--json PATH]

1. History: ``--runs`` finished runs (one tag each, ten jobs, ended over the last 100 days) are
   bulk-loaded straight into a fresh database (SQLite: one executemany per 50,000 rows; PostgreSQL:
   COPY), then a supervisor starts on it and ``runs list`` is timed through the gRPC client exactly
   as ``dagctl runs list`` calls it: the first page, a page deep in history, and filtered by status,
   job and tag (p50/p99 of 30 calls each); ``dagctl runs list`` processes, start to exit (10 each,
   plain and with a tag); then ``dagctl webserver`` starts on a free port and its runs page is
   fetched the same ways (``/runs``, a page in the middle, the tabs, status, job and tag filters;
   30 GETs each, whole response).
2. Purge: the purge's search over the whole history when nothing has expired, and deleting the
   oldest 10% (``purge_runs``, the code ``dagctl runs purge`` and the automatic purge run).
3. Steady load: a fresh database, a supervisor keeping finished runs and skipped sensor ticks
   ``--keep-minutes`` (default one), purging every 5 s; a writer adds finished runs (3 events, 20
   log lines each) and skipped sensor ticks at ``--rate`` a second, the way daemons and workers
   write them, for ``--steady-seconds``. The database size (SQLite: file + WAL; PostgreSQL: the
   schema's relations) and the run count are sampled every ``--sample-seconds`` (also appended to
   ``--samples-file`` as they come, for runs of an hour): with retention on they level off once the
   first retention period has expired; the writer's transaction latency shows whether purging
   stalls writers. On a PostgreSQL server with autovacuum off, the purged tables are vacuumed
   every ``--vacuum-seconds`` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import address, distribution, postgres_schema, running_supervisor, summary_ms, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402
from dagd.runs.model import RunStatus  # noqa: E402
from dagd.storage.database import DirectDatabase  # noqa: E402
from dagd.storage.engine import open_storage  # noqa: E402
from dagd.storage.instigators import TICK_SKIPPED, NewTick, TickEnd  # noqa: E402
from dagd.storage.retention import purge_runs  # noqa: E402
from dagd.storage.runs import NewRun  # noqa: E402
from dagd.storage.sql import sqlite_time

UTC = timezone.utc
JOBS = [f"job_{i}" for i in range(10)]
COLUMNS = ("run_id", "job_name", "status", "priority", "tags", "run_config", "created_at", "updated_at",
           "started_at", "ended_at")  # fmt: skip


@contextlib.contextmanager
def database(backend: str) -> Iterator[tuple[str, str]]:
    """(storage URL, dagd.yaml storage section) of a fresh, empty database."""
    if backend == "postgres":
        with postgres_schema() as url:
            yield url, f"storage:\n  postgres:\n    url: '{url}'\n"
        return
    with tempfile.TemporaryDirectory(prefix="dagd-bench-db-") as tmp:
        yield f"sqlite:///{tmp}/dagd.db", f"storage:\n  sqlite:\n    base_dir: '{tmp}'\n"


def history_rows(count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(7)
    span = 100 * 86_400
    for i in range(count):
        # Oldest first, so seq order is time order, as in a real history.
        ended = now - timedelta(seconds=span * (count - i) / count)
        created = ended - timedelta(seconds=rng.randint(1, 600))
        status = rng.choices(["SUCCESS", "FAILURE", "CANCELED"], weights=[90, 8, 2])[0]
        yield (uuid.uuid4().hex, JOBS[i % len(JOBS)], status, 0, json.dumps({"team": f"t{i % 50}"}), "{}",
               created, ended, created, ended)  # fmt: skip


def bulk_load(url: str, count: int, now: datetime) -> float:
    """Load ``count`` finished runs and their tags; seconds taken."""
    open_storage(url).dispose()  # the schema, at head
    began = time.monotonic()
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split(":///", 1)[1])
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        rows = history_rows(count, now)
        while True:
            chunk = [
                tuple(sqlite_time(v) if isinstance(v, datetime) else v for v in row)
                for _, row in zip(range(50_000), rows, strict=False)
            ]
            if not chunk:
                break
            conn.execute("BEGIN")
            conn.executemany(
                f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", chunk
            )
            conn.execute("COMMIT")
        conn.execute(
            "INSERT INTO run_tags (run_id, key, value, run_seq)"
            " SELECT run_id, 'team', json_extract(tags, '$.team'), seq FROM runs"
        )
        conn.commit()
        conn.execute("ANALYZE")
        conn.close()
    else:
        import psycopg

        with psycopg.connect("postgresql://" + url.split("://", 1)[1]) as conn:
            with conn.cursor() as cur:
                with cur.copy(f"COPY runs ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in history_rows(count, now):
                        copy.write_row(row)
                cur.execute(
                    "INSERT INTO run_tags (run_id, key, value, run_seq)"
                    " SELECT run_id, 'team', tags::json->>'team', seq FROM runs"
                )
                cur.execute("ANALYZE")
    return time.monotonic() - began


def timed(call: Any, repeats: int = 30) -> list[float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return samples


def list_latencies(home: pathlib.Path) -> dict[str, Any]:
    client = Client(address(home))
    try:
        first, token = client.list_runs(limit=50)
        assert len(first) == 50
        deep = str(int(token) // 2)  # a page from the middle of history
        cases = {
            "first page (50)": lambda: client.list_runs(limit=50),
            "page in the middle": lambda: client.list_runs(limit=50, page_token=deep),
            "status FAILURE": lambda: client.list_runs(statuses=["FAILURE"], limit=50),
            "status QUEUED (none)": lambda: client.list_runs(statuses=["QUEUED"], limit=50),
            "job job_3": lambda: client.list_runs(job_name="job_3", limit=50),
            "tag team=t7": lambda: client.list_runs(tags={"team": "t7"}, limit=50),
        }
        results = {}
        for name, call in cases.items():
            call()  # warm
            samples = timed(call)
            results[name] = distribution(samples, 1000)
            print(f"    runs list, {name:<22} {summary_ms(samples)}")
    finally:
        client.close()
    for name, extra in (("", []), (" --tag team=t7", ["--tag", "team=t7"])):
        argv = [sys.executable, "-m", "dagd.client.cli", "runs", "list", *extra]
        samples = timed(
            lambda argv=argv: subprocess.run(argv, env=_env(home), capture_output=True, check=True), 10
        )
        results[f"dagctl runs list{name} (process)"] = distribution(samples, 1000)
        print(f"    `dagctl runs list{name}` process, start to exit: {summary_ms(samples)}")
    return results


def page_latencies(home: pathlib.Path, deep_token: str) -> dict[str, Any]:
    """The web UI's runs page (``dagctl webserver`` on a free port, over gRPC to the supervisor):
    one GET each, the whole response read, as a browser loads it."""
    import urllib.request

    from common import stop_process

    proc = subprocess.Popen(
        [sys.executable, "-m", "dagd.client.cli", "webserver", "--port", "0"], env=_env(home),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads((home / "webserver.json").read_text())
                url = data["url"] if data.get("pid") == proc.pid else None
            if url is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the webserver did not publish its URL")
                time.sleep(0.1)

        def get(path: str) -> None:
            with urllib.request.urlopen(url.rstrip("/") + path, timeout=30) as response:
                assert response.status == 200, (path, response.status)
                response.read()

        cases = {
            "/runs": "/runs",
            "/runs, a page in the middle": f"/runs?before={deep_token}",
            "/runs, Finished tab": "/runs?tab=finished",
            "/runs, In progress tab (none)": "/runs?tab=in_progress",
            "/runs, status FAILURE": "/runs?tab=finished&status=FAILURE",
            "/runs, job job_3": "/runs?job=job_3",
            "/runs, tag team=t7": "/runs?tag=team%3Dt7",
        }
        results = {}
        for name, path in cases.items():
            get(path)  # warm
            samples = timed(lambda path=path: get(path))
            results[name] = distribution(samples, 1000)
            print(f"    page {name:<30} {summary_ms(samples)}")
    finally:
        stop_process(proc)
    return results


def _env(home: pathlib.Path) -> dict[str, str]:
    import os

    return {**os.environ, "DAGD_HOME": str(home)}


def purge_figures(url: str, count: int, now: datetime) -> dict[str, Any]:
    storage = open_storage(url)
    try:
        t0 = time.perf_counter()
        assert sum(purge_runs(storage, now - timedelta(days=365))) == 0
        scan = time.perf_counter() - t0
        cutoff = now - timedelta(days=90)  # the oldest 10% ended over 90 days ago
        t0 = time.perf_counter()
        deleted = sum(purge_runs(storage, cutoff))
        took = time.perf_counter() - t0
    finally:
        storage.dispose()
    print(f"    purge search over {count:,} runs, nothing expired: {scan * 1000:.0f} ms")
    print(
        f"    purge of the oldest {deleted:,} runs: {took:.1f} s ({deleted / took:,.0f} runs/s, 200 per transaction)"
    )
    return {
        "empty_search_ms": scan * 1000,
        "deleted": deleted,
        "seconds": took,
        "runs_per_second": deleted / took,
    }


def database_bytes(url: str) -> int:
    if url.startswith("sqlite"):
        path = pathlib.Path(url.split(":///", 1)[1])
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect("postgresql://" + url.split("://", 1)[1]) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()
    return int(row[0]) if row else 0


def vacuum(url: str) -> None:
    """What autovacuum does to the tables the purge deletes from (it is off on some test servers)."""
    import psycopg

    with psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True) as conn:
        for table in ("runs", "run_tags", "run_events", "run_logs", "ticks"):
            conn.execute(f"VACUUM {table}")


def autovacuum_on() -> bool:
    import psycopg
    from common import PG_BASE

    with psycopg.connect("postgresql://" + PG_BASE.split("://", 1)[1]) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return bool(row) and row[0] == "on"


def steady_load(
    backend: str,
    seconds: float,
    rate: float,
    vacuum_every: float = 0,
    keep_minutes: float = 1,
    sample_every: float = 5,
    samples_file: str | None = None,
) -> dict[str, Any]:
    days = keep_minutes / 1440
    retention = (
        f"retention:\n  purge_interval_seconds: 5\n  runs: {{purge_after_days: {days:.6f}}}\n"
        f"  sensor: {{purge_after_days: {{skipped: {days:.6f}}}}}\n"
    )
    out_file = open(samples_file, "a") if samples_file else None  # noqa: SIM115 - closed below
    with database(backend) as (url, section), running_supervisor(section + retention):
        writer = DirectDatabase(url)
        stop = threading.Event()
        latencies: list[float] = []

        def write() -> None:
            next_at = time.monotonic()
            while not stop.is_set():
                t0 = time.perf_counter()
                run = writer.runs.create(
                    NewRun(
                        job_name=random.choice(JOBS),
                        tags={"team": "a"},
                        run_config={},
                        priority=0,
                        status=RunStatus.STARTING,
                    )  # fmt: skip
                )
                writer.runs.transition(run.run_id, RunStatus.STARTED, expected=(RunStatus.STARTING,))
                writer.runs.append_logs(run.run_id, [(datetime.now(UTC), "stdout", "INFO", "x" * 80)] * 20)
                writer.runs.transition(run.run_id, RunStatus.SUCCESS, expected=(RunStatus.STARTED,))
                tick = writer.instigators.create_ticks([NewTick(kind="sensor", name="poller")], epoch=None)[0]
                if tick is not None:
                    writer.instigators.finish_ticks([TickEnd(tick_id=tick.id, status=TICK_SKIPPED)])
                latencies.append(time.perf_counter() - t0)
                next_at += 1 / rate
                stop.wait(max(0.0, next_at - time.monotonic()))

        thread = threading.Thread(target=write)
        thread.start()
        samples = []
        began = time.monotonic()
        vacuumed = sampled = began
        try:
            while time.monotonic() - began < seconds:
                time.sleep(5)
                if backend == "postgres" and vacuum_every and time.monotonic() - vacuumed >= vacuum_every:
                    vacuum(url)
                    vacuumed = time.monotonic()
                if time.monotonic() - sampled < sample_every - 0.5:
                    continue
                sampled = time.monotonic()
                with writer.sql_read() as sql:
                    runs = sql.scalar("SELECT COUNT(*) FROM runs")
                    ticks = sql.scalar("SELECT COUNT(*) FROM ticks")
                size = database_bytes(url)
                samples.append(
                    {"t": round(time.monotonic() - began), "bytes": size, "runs": runs, "ticks": ticks}
                )
                print(
                    f"    t={samples[-1]['t']:>4}s  size {size / 1e6:7.2f} MB  runs {runs:>6}  ticks {ticks:>6}",
                    flush=True,
                )
                if out_file:
                    out_file.write(json.dumps({**samples[-1], "utc": datetime.now(UTC).isoformat()}) + "\n")
                    out_file.flush()
        finally:
            stop.set()
            thread.join()
            writer.dispose()
            if out_file:
                out_file.close()
    print(f"    writer: {len(latencies)} runs at {rate:g}/s; one run's writes {summary_ms(latencies)}")
    return {"rate": rate, "samples": samples, "writer_ms": distribution(latencies, 1000)}


def history(backend: str, count: int, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with database(backend) as (url, section):
        took = bulk_load(url, count, now)
        print(
            f"    loaded {count:,} runs (+ tags) in {took:.0f} s; database {database_bytes(url) / 1e6:.0f} MB"
        )
        out["load_seconds"] = took
        with running_supervisor(section, ready_timeout=120) as home:
            out["list_ms"] = list_latencies(home)
            client = Client(address(home))
            try:
                deep = str(int(client.list_runs(limit=50)[1]) // 2)
            finally:
                client.close()
            out["page_ms"] = page_latencies(home, deep)
        out["purge"] = purge_figures(url, count, now)
    return out


def bench(
    backend: str,
    count: int,
    steady_seconds: float,
    rate: float,
    keep_minutes: float = 1,
    sample_every: float = 5,
    vacuum_seconds: float = 30,
    samples_file: str | None = None,
) -> dict[str, Any]:
    print(f"== {backend} ==")
    now = datetime.now(UTC)
    out: dict[str, Any] = {}
    if count > 0:  # --runs 0: the steady-load part only
        out.update(history(backend, count, now))
    if steady_seconds > 0:
        vacuum_every = 0.0
        if backend == "postgres" and not autovacuum_on():
            vacuum_every = vacuum_seconds
            print(
                f"    autovacuum is off on this server: VACUUM every {vacuum_every:g} s instead, as autovacuum would",
                flush=True,
            )
        out["steady"] = steady_load(
            backend, steady_seconds, rate, vacuum_every, keep_minutes, sample_every, samples_file
        )
        out["steady"]["manual_vacuum_seconds"] = vacuum_every
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=1_000_000, help="history size; 0 skips the history part")
    parser.add_argument("--steady-seconds", type=float, default=240)
    parser.add_argument("--rate", type=float, default=20, help="runs (and sensor ticks) per second")
    parser.add_argument(
        "--keep-minutes", type=float, default=1, help="steady load: retention of runs and ticks"
    )
    parser.add_argument("--sample-seconds", type=float, default=5, help="steady load: size sampling interval")
    parser.add_argument(
        "--vacuum-seconds", type=float, default=30,
        help="steady load, PostgreSQL with autovacuum off: VACUUM the purged tables this often",
    )  # fmt: skip
    parser.add_argument(
        "--samples-file", help="steady load: append each size sample to this file (JSON lines)"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = {
        b: bench(
            b,
            args.runs,
            args.steady_seconds,
            args.rate,
            args.keep_minutes,
            args.sample_seconds,
            args.vacuum_seconds,
            args.samples_file,
        )  # fmt: skip
        for b in backends
    }
    write_json(args.json, results)


if __name__ == "__main__":
    main()
