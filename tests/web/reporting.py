"""A second code location for the browser tests: a described, tagged job with a schedule and a
sensor aimed at it (both stopped, so they never tick during the tests)."""

from dagd import Definitions, SkipReason, job, schedule, sensor


@job(tags={"team": "analytics", "dagd/priority": "2"})
def daily_report(context):
    """Builds the daily report.

    Reads yesterday's runs and writes a summary."""
    context.log.info("report for %s", context.run_config.get("day", "yesterday"))


@schedule(cron_schedule="0 6 * * *", job=daily_report, execution_timezone="Asia/Tokyo")
def daily_report_morning(context):
    return None


@sensor(job=daily_report, minimum_interval_seconds=3600)
def report_requests(context):
    return SkipReason("nothing to do")


defs = Definitions(jobs=[daily_report], schedules=[daily_report_morning], sensors=[report_requests])
