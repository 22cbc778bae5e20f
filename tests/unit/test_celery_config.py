"""The Celery launcher's pure parts: its config section, its message, and fitting runs into slots."""

from __future__ import annotations

import pathlib

import pytest

from dagd.errors import ConfigError
from dagd.instance.config import load_instance_config
from dagd.runs.celery.slots import fit_slots

CELERY = "run_launcher:\n  module: dagd.run_launcher\n  class: CeleryRunLauncher\n  config: {cfg}\n"
PG = "storage:\n  postgres: {url: 'postgresql+psycopg://u:pw@db/x'}\n"


def _load(tmp_path: pathlib.Path, text: str) -> object:
    path = tmp_path / "dagd.yaml"
    path.write_text(text)
    return load_instance_config(path, environ={})


def test_a_valid_section_loads(tmp_path: pathlib.Path) -> None:
    config = _load(tmp_path, PG + CELERY.format(cfg="{broker_url: 'redis://127.0.0.1:6379/3', queue: etl}"))
    assert config.run_launcher.config["queue"] == "etl"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cfg", "reason"),
    [
        ("{}", "run_launcher.config.broker_url: field required"),
        (
            "{broker_url: 'http://x'}",
            "run_launcher.config.broker_url: must be an amqp:// (RabbitMQ) or redis:// URL",
        ),
        ("{broker_url: 'amqp://h//', queue: 'a b'}", "run_launcher.config.queue: must be a queue name"),
        (
            "{broker_url: 'amqp://h//', relay_after_seconds: 0}",
            "run_launcher.config.relay_after_seconds: must be > 0",
        ),
        ("{broker_url: 'amqp://h//', priority: 1}", "run_launcher.config.priority: unknown key"),
    ],
)
def test_a_bad_section_is_one_line_naming_the_key(tmp_path: pathlib.Path, cfg: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, PG + CELERY.format(cfg=cfg))
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_a_broker_password_never_appears_in_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, PG + CELERY.format(cfg="{broker_url: 'http://user:s3cret@h/'}"))
    assert "s3cret" not in str(caught.value)


def test_sqlite_storage_is_refused_with_one_line(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, CELERY.format(cfg="{broker_url: 'amqp://h//'}"))
    assert str(caught.value) == (
        f"{tmp_path / 'dagd.yaml'}: run_launcher: CeleryRunLauncher needs storage.postgres:"
        " workers on other hosts cannot share a SQLite file"
    )


def test_runs_fit_into_free_slots_in_launch_order_per_queue() -> None:
    order = ["h1", "h2", "g1", "l1", "l2"]
    queue_of = {"h1": "dagd", "h2": "dagd", "g1": "gpu", "l1": "dagd", "l2": "none"}

    launch, waiting = fit_slots(order, queue_of, {"dagd": 2, "gpu": 1})

    assert launch == ["h1", "h2", "g1"]
    assert waiting == {"l1": "dagd", "l2": "none"}


def test_a_message_carries_the_attempt_and_token_only() -> None:
    from dagd.runs.celery.app import message, parse_message

    body = message("r1", 2, "tok")
    assert body == {"run_id": "r1", "attempt": 2, "dispatch_token": "tok"}
    assert parse_message(body) == ("r1", 2, "tok")
    assert parse_message({**body, "password": "x"}) is None
    assert parse_message({"run_id": "r1", "attempt": "2", "dispatch_token": "tok"}) is None
