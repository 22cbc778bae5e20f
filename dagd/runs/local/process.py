"""Processes on this host: moved to :mod:`dagd.processes` (one place for process identity and
signalling); kept so existing imports work."""

from dagd.processes import (  # noqa: F401
    create_time,
    kill_session,
    process_matches,
    session_members,
    signal_group,
)
