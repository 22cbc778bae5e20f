"""The quickstart code location: a few jobs to try dagd with.

dagctl dev -w examples/quickstart/workspace.yaml
dagctl submit hello
"""

import time

from dagd import Definitions, RunRequest, job, schedule, sensor


@job
def hello(context):
    """Logs a greeting and prints a line."""
    context.log.info("hello from dagd run %s", context.run_id)
    print("stdout works too")


@job(tags={"dagd/priority": "3"})
def important_job(context):
    context.log.info("an important job with config %s", context.run_config)


@job
def sleepy(context):
    """Sleeps for run_config['seconds'] (default 30): handy to try terminate and limits."""
    seconds = float(context.run_config.get("seconds", 30))
    context.log.info("sleeping %.1fs", seconds)
    time.sleep(seconds)


@job
def broken(context):
    raise ValueError("this job always fails")


@schedule(cron_schedule="*/5 * * * *", job=hello, execution_timezone="UTC")
def every_five_minutes(context):
    return None


@sensor(job=hello, minimum_interval_seconds=30)
def tick_sensor(context):
    yield RunRequest(run_key=f"tick-{int(time.time()) // 3600}")


defs = Definitions(
    jobs=[hello, important_job, sleepy, broken],
    schedules=[every_five_minutes],
    sensors=[tick_sensor],
)
