"""The soak's code location: short jobs, a few schedules every minute, a few sensors every few seconds."""

import time

from dagd import Definitions, RunRequest, SkipReason, job, schedule, sensor


@job
def noop(context):
    pass


@job
def chatty(context):
    """A few log lines and a short sleep: exercises log capture and the worker heartbeat."""
    for i in range(int(context.run_config.get("lines", 5))):
        context.log.info("line %d of run %s", i, context.run_id)
    print("stdout line")
    time.sleep(float(context.run_config.get("seconds", 0.5)))


@job
def fails(context):
    raise RuntimeError("fails on purpose")


def every_minute(i):
    @schedule(cron_schedule="* * * * *", job=noop, name=f"every_minute_{i}", default_status="RUNNING")
    def fn(context):
        return None

    return fn


def counter(i):
    @sensor(job=chatty, name=f"counter_{i}", minimum_interval_seconds=5, default_status="RUNNING")
    def fn(context):
        n = int(context.cursor or 0) + 1
        context.update_cursor(str(n))
        if n % 6:
            return SkipReason(f"evaluation {n}: nothing new")
        return RunRequest(run_key=f"counter-{i}-{n}", run_config={"lines": 3, "seconds": 0.1})

    return fn


defs = Definitions(
    jobs=[noop, chatty, fails],
    schedules=[every_minute(i) for i in range(3)],
    sensors=[counter(i) for i in range(3)],
)
