"""Jobs used by the benchmarks."""

import time

from dagd import Definitions, job


@job
def noop(context):
    pass


@job
def first_line(context):
    # The benchmark measures submit -> this line, from the log line's own timestamp.
    context.log.info("t=%.6f", time.time())


@job
def sleeper(context):
    # bench_monitoring SIGKILLs this run's worker while it sleeps.
    time.sleep(float(context.run_config.get("seconds", 60)))


@job(resumable=True)
def resumable_sleeper(context):
    # bench_attempts freezes this run's worker (SIGSTOP) and times the resume.
    time.sleep(float(context.run_config.get("seconds", 60)))


defs = Definitions(jobs=[noop, first_line, sleeper, resumable_sleeper])
