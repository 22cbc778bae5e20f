"""The daemons: ``scheduler``, ``run_queue``, ``sensor`` and ``run_monitoring``.

Each runs in its own OS process (``python -m dagd.daemons NAME --home DIR``) started by the
supervisor, over the shared loop in :mod:`dagd.daemons.base`. Daemon processes never import grpc.
"""

DAEMON_NAMES = ("scheduler", "run_queue", "sensor", "run_monitoring")
