"""Schedule time math: when a cron schedule in a timezone is due (pure, no I/O)."""
