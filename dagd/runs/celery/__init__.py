"""Runs on a worker fleet, with Celery carrying messages only (docs/cluster.md).

- :mod:`.launcher`  ``CeleryRunLauncher``: publishes ``{run_id, attempt, dispatch_token}`` after the
  dispatch transaction committed; a relay republishes attempts no worker claimed.
- :mod:`.host`      ``dagctl worker run``: consumes the messages and runs each attempt's watcher
  (:mod:`dagd.runs.worker`) as a process of its own; registers and heartbeats the host.
- :mod:`.app`       the Celery application both sides share (settings: JSON, early ack, prefetch 1,
  no result backend, message expiry, broker retries forever on the worker side).
- :mod:`.slots`     the run queue's pure "which runs fit into free worker slots".

Nothing here imports Celery at module level but ``app``: daemons import Celery only when the
Celery launcher is configured.
"""
