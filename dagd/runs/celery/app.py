"""The Celery application of the launcher and the worker hosts: transport only.

dagd never reads Celery's state; the database holds the truth. Hence (DESIGN §3): JSON only,
early acknowledgement (a run lasting hours must not meet RabbitMQ's consumer timeout or Redis's
visibility timeout and be redelivered while running), a prefetch of one per slot, no result
backend, an expiry on every message, no broker priorities (dagd dispatches in priority order into
free slots), and on the worker side broker connection retries forever.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

TASK_NAME = "dagd.run_attempt"
MESSAGE_KEYS = ("run_id", "attempt", "dispatch_token")


def make_app(broker_url: str, default_queue: str, *, worker: bool) -> Celery:
    """The shared settings; ``worker`` retries the broker forever, a publisher gives up (and its
    relay publishes again later)."""
    app = Celery("dagd", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_default_queue=default_queue,
        task_create_missing_queues=True,
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,  # no pidbox queues: nothing to control remotely
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None if worker else 1,
        broker_connection_timeout=4.0,
        broker_heartbeat=10 if worker else 0,
        broker_pool_limit=4,
    )
    if broker_url.startswith(("redis://", "rediss://")):
        # A dead connection must surface as an error (and a reconnect), never a silent wait.
        app.conf.broker_transport_options = {
            "socket_timeout": 10.0,
            "socket_connect_timeout": 4.0,
            "socket_keepalive": True,
            "health_check_interval": 5,
        }
    return app


def message(run_id: str, attempt: int, dispatch_token: str) -> dict[str, Any]:
    """The whole message: which attempt, and the token that proves the claim. No credentials."""
    return {"run_id": run_id, "attempt": attempt, "dispatch_token": dispatch_token}


def parse_message(body: Any) -> tuple[str, int, str] | None:
    """(run_id, attempt, token) from a received message's kwargs, or None if malformed."""
    if not isinstance(body, dict) or set(body) != set(MESSAGE_KEYS):
        return None
    run_id, attempt, token = body["run_id"], body["attempt"], body["dispatch_token"]
    if not (isinstance(run_id, str) and isinstance(attempt, int) and isinstance(token, str)):
        return None
    return run_id, attempt, token
