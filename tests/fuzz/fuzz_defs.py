"""Definitions the fuzz suite's supervisor serves: a job, a schedule and a sensor, all inert.

The schedule and the sensor are STOPPED and never ask for a run, so nothing but the fuzzer's own
accepted submissions can create runs.
"""

from dagd import Definitions, SkipReason, job, schedule, sensor


@job
def hello(context):
    context.log.info("hello")


@schedule(cron_schedule="0 0 1 1 *", job=hello, execution_timezone="Europe/Paris")
def yearly(context):
    return SkipReason("the fuzz suite never runs anything on a schedule")


@sensor(job=hello, minimum_interval_seconds=3600)
def idle(context):
    return SkipReason("nothing to see")


defs = Definitions(jobs=[hello], schedules=[yearly], sensors=[idle])
