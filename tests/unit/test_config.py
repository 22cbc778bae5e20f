"""What must hold for dagd.yaml: defaults, refusals with a one-line message, env values, masking."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from dagd.errors import ConfigError
from dagd.instance.config import (
    DAEMON_NAMES,
    InstanceConfig,
    QueuedRunCoordinatorConfig,
    TagConcurrencyLimit,
    load_instance_config,
    validate_section,
)
from dagd.masking import mask_secrets, masked_url


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dagd.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> InstanceConfig:
    return load_instance_config(write(tmp_path, text), environ=environ or {})


def refusal(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    """The error message for a file that must be refused; checks the shape every message shares."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_instance_config(path, environ=environ or {})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# --- defaults ------------------------------------------------------------------------------------


def test_missing_file_means_all_defaults(tmp_path: Path) -> None:
    assert load_instance_config(tmp_path / "absent.yaml", environ={}) == InstanceConfig()


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_file_means_all_defaults(tmp_path: Path, text: str) -> None:
    assert load(tmp_path, text) == InstanceConfig()


def test_section_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.storage.kind == "sqlite"
    assert config.storage.sqlite is not None and config.storage.sqlite.base_dir == "storage"
    assert config.storage.sqlite.resolve_dir(tmp_path) == tmp_path / "storage"
    assert config.storage.postgres is None

    assert config.run_coordinator.module == "dagd.run_coordinator"
    assert config.run_coordinator.class_name == "QueuedRunCoordinator"
    assert config.run_coordinator.config == {}
    assert config.run_launcher.module == "dagd.run_launcher"
    assert config.run_launcher.class_name == "LocalProcessRunLauncher"
    assert config.run_launcher.config == {}

    monitoring = config.run_monitoring
    assert monitoring.enabled is True
    assert monitoring.start_timeout_seconds == 180
    assert monitoring.cancel_timeout_seconds == 180
    assert monitoring.poll_interval_seconds == 5
    assert monitoring.max_resume_run_attempts == 0
    assert monitoring.max_runtime_seconds == 0

    daemons = config.daemons
    assert daemons.heartbeat_interval_seconds == 1.0
    assert daemons.heartbeat_timeout_seconds == 20.0
    assert daemons.restart.initial_backoff_seconds == 0.5
    assert daemons.restart.max_backoff_seconds == 30
    assert daemons.restart.budget == 5
    assert daemons.restart.budget_window_seconds == 60
    assert daemons.restart.cooldown_seconds == 60
    assert daemons.stop_grace_seconds == 5
    assert daemons.enabled is None
    assert daemons.enabled_daemons == DAEMON_NAMES

    grpc = config.grpc
    assert (grpc.socket, grpc.tcp, grpc.token, grpc.token_file, grpc.tls) == (None, None, None, None, None)
    assert grpc.max_message_bytes == 4194304

    assert (config.webserver.host, config.webserver.port, config.webserver.token) == ("127.0.0.1", 3000, None)
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", None)


def test_queued_coordinator_config_defaults() -> None:
    queued = QueuedRunCoordinatorConfig()
    assert queued.max_concurrent_runs == 10
    assert queued.tag_concurrency_limits == []
    assert queued.dequeue_interval_seconds == 5.0
    assert queued.max_launch_retries == 0


def test_blank_section_means_its_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "daemons:\nstorage:\n  sqlite:\nrun_coordinator:\n  config:\n")
    assert config == InstanceConfig()


def test_spec_example_loads(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        storage:
          sqlite: {base_dir: storage}
        run_coordinator:
          module: dagd.run_coordinator
          class: QueuedRunCoordinator
          config:
            max_concurrent_runs: 25
            tag_concurrency_limits:
              - {key: database, value: redshift, limit: 4}
              - {key: dagd/backfill, limit: 10}
              - {key: use-case, value: {applyLimitPerUniqueValue: true}, limit: 3}
        run_launcher: {module: dagd.run_launcher, class: LocalProcessRunLauncher}
        run_monitoring: {enabled: true, start_timeout_seconds: 180, cancel_timeout_seconds: 180,
                         poll_interval_seconds: 5, max_resume_run_attempts: 0}
        daemons: {heartbeat_interval_seconds: 2, heartbeat_timeout_seconds: 30}
        """,
    )
    queued = validate_section(
        QueuedRunCoordinatorConfig, config.run_coordinator.config, file="dagd.yaml", prefix="x"
    )
    assert queued.max_concurrent_runs == 25
    assert len(queued.tag_concurrency_limits) == 3
    assert config.daemons.heartbeat_timeout_seconds == 30


# --- unknown keys and wrong types ------------------------------------------------------------------


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path, "storgae: {}\n").endswith(": storgae: unknown key")


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("daemons: {heartbeat_intervall_seconds: 1}", "daemons.heartbeat_intervall_seconds"),
        ("daemons: {restart: {budgett: 1}}", "daemons.restart.budgett"),
        ("run_coordinator: {klass: X}", "run_coordinator.klass"),
        ("run_coordinator: {config: {max_concurent_runs: 1}}", "run_coordinator.config.max_concurent_runs"),
        (
            "run_coordinator: {config: {tag_concurrency_limits: [{key: a, limit: 1, vlaue: b}]}}",
            "run_coordinator.config.tag_concurrency_limits.0.vlaue",
        ),
        ("grpc: {tcp: {port: 1, hots: x}, token: t}", "grpc.tcp.hots"),
        (  # was accepted and ignored: DefaultRunCoordinator takes no settings at all
            "run_coordinator: {class: DefaultRunCoordinator, config: {max_concurrent_runs: 5}}",
            "run_coordinator.config.max_concurrent_runs",
        ),
    ],
)
def test_unknown_nested_key_is_refused_with_its_path(tmp_path: Path, text: str, key_path: str) -> None:
    assert refusal(tmp_path, text).endswith(f": {key_path}: unknown key")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "run_coordinator: {config: {max_concurrent_runs: abc}}",
            "run_coordinator.config.max_concurrent_runs: expected an integer, got 'abc'",
        ),
        (
            "run_coordinator: {config: {max_concurrent_runs: 2.5}}",
            "run_coordinator.config.max_concurrent_runs: expected an integer, got 2.5",
        ),
        (
            "run_coordinator: {config: {max_concurrent_runs: true}}",
            "run_coordinator.config.max_concurrent_runs: expected an integer, got true",
        ),
        (
            "daemons: {heartbeat_interval_seconds: [1]}",
            "daemons.heartbeat_interval_seconds: expected a number, got a list",
        ),
        ("run_monitoring: {enabled: maybe}", "run_monitoring.enabled: expected true or false, got 'maybe'"),
        ("run_coordinator: {class: 3}", "run_coordinator.class: expected a string, got 3"),
        ("daemons: 5", "daemons: expected a mapping, got 5"),
        (
            "run_coordinator: {config: {tag_concurrency_limits: {key: a}}}",
            "run_coordinator.config.tag_concurrency_limits: expected a list, got a mapping",
        ),
    ],
)
def test_wrong_type_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert refusal(tmp_path, text).endswith(f": {expected}")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "expected a mapping" in refusal(tmp_path, "- storage\n- daemons\n")


def test_first_error_is_reported_deterministically(tmp_path: Path) -> None:
    text = "daemons: {heartbeat_interval_seconds: x, stop_grace_seconds: y}\nzzz: 1\n"
    messages = {refusal(tmp_path, text) for _ in range(3)}
    assert len(messages) == 1
    assert "daemons.heartbeat_interval_seconds" in messages.pop()


# --- ranges ---------------------------------------------------------------------------------------


def coordinator(max_runs: int) -> str:
    return f"run_coordinator:\n  config:\n    max_concurrent_runs: {max_runs}\n"


@pytest.mark.parametrize("max_runs", [-1, 0, 1, 25])
def test_max_concurrent_runs_accepts_no_limit_zero_and_positive(tmp_path: Path, max_runs: int) -> None:
    config = load(tmp_path, coordinator(max_runs))
    assert config.run_coordinator.config["max_concurrent_runs"] == max_runs


@pytest.mark.parametrize("max_runs", [-2, -5])
def test_max_concurrent_runs_below_minus_one_is_refused_at_load(tmp_path: Path, max_runs: int) -> None:
    assert refusal(tmp_path, coordinator(max_runs)).endswith(
        ": run_coordinator.config.max_concurrent_runs: must be -1 (no limit), 0, or a positive integer"
    )


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_max_concurrent_runs_rule(max_runs: int) -> None:
    if max_runs >= -1:
        assert QueuedRunCoordinatorConfig(max_concurrent_runs=max_runs).max_concurrent_runs == max_runs
    else:
        with pytest.raises(ConfigError):
            validate_section(
                QueuedRunCoordinatorConfig, {"max_concurrent_runs": max_runs}, file="f", prefix=""
            )


def test_custom_coordinator_config_is_not_checked_at_load(tmp_path: Path) -> None:
    config = load(
        tmp_path, "run_coordinator: {module: my.mod, class: Mine, config: {max_concurrent_runs: -5}}"
    )
    assert config.run_coordinator.config == {"max_concurrent_runs": -5}


def test_tag_limit_below_zero_is_refused(tmp_path: Path) -> None:
    text = "run_coordinator: {config: {tag_concurrency_limits: [{key: a, limit: -1}]}}"
    assert refusal(tmp_path, text).endswith(
        ": run_coordinator.config.tag_concurrency_limits.0.limit: must be >= 0"
    )


def test_tag_limit_without_limit_is_refused(tmp_path: Path) -> None:
    text = "run_coordinator: {config: {tag_concurrency_limits: [{key: a, limit: 1}, {key: b}]}}"
    assert refusal(tmp_path, text).endswith(
        ": run_coordinator.config.tag_concurrency_limits.1.limit: field required"
    )


def test_tag_limit_with_empty_key_is_refused(tmp_path: Path) -> None:
    text = "run_coordinator: {config: {tag_concurrency_limits: [{key: '', limit: 1}]}}"
    assert refusal(tmp_path, text).endswith(
        ": run_coordinator.config.tag_concurrency_limits.0.key: must not be empty"
    )


@pytest.mark.parametrize(
    "daemons",
    [
        "{heartbeat_interval_seconds: 5, heartbeat_timeout_seconds: 5}",
        "{heartbeat_interval_seconds: 5, heartbeat_timeout_seconds: 4}",
        "{heartbeat_interval_seconds: 30}",
    ],
)
def test_heartbeat_timeout_must_exceed_interval(tmp_path: Path, daemons: str) -> None:
    message = refusal(tmp_path, f"daemons: {daemons}\n")
    assert ": daemons.heartbeat_timeout_seconds: must be greater than heartbeat_interval_seconds" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daemons: {heartbeat_interval_seconds: 0}", "daemons.heartbeat_interval_seconds: must be > 0"),
        ("run_monitoring: {start_timeout_seconds: -1}", "run_monitoring.start_timeout_seconds: must be > 0"),
        (
            "run_monitoring: {max_resume_run_attempts: -1}",
            "run_monitoring.max_resume_run_attempts: must be >= 0",
        ),
        (
            "run_coordinator: {config: {dequeue_interval_seconds: 0}}",
            "run_coordinator.config.dequeue_interval_seconds: must be > 0",
        ),
        (
            "run_coordinator: {config: {max_launch_retries: -1}}",
            "run_coordinator.config.max_launch_retries: must be >= 0",
        ),
        ("webserver: {port: 70000}", "webserver.port: must be <= 65535"),
        ("grpc: {tcp: {port: -1}, token: t}", "grpc.tcp.port: must be >= 0"),
        (
            "run_monitoring: {poll_interval_seconds: .inf}",
            "run_monitoring.poll_interval_seconds: must be a finite number, got inf",
        ),
        (
            "daemons: {restart: {initial_backoff_seconds: 10, max_backoff_seconds: 1}}",
            "daemons.restart.max_backoff_seconds: must be >= initial_backoff_seconds",
        ),
    ],
)
def test_out_of_range_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert refusal(tmp_path, text).endswith(f": {expected}")


def test_enabled_daemons_must_be_known(tmp_path: Path) -> None:
    assert refusal(tmp_path, "daemons: {enabled: [scheduler, run-queue]}").endswith(
        ": daemons.enabled.1: must be one of scheduler, run_queue, sensor, run_monitoring, got 'run-queue'"
    )
    config = load(tmp_path, "daemons: {enabled: [sensor, scheduler]}")
    assert config.daemons.enabled_daemons == ("scheduler", "sensor")


# --- storage, listeners -----------------------------------------------------------------------------


def test_postgres_storage(tmp_path: Path) -> None:
    config = load(tmp_path, "storage: {postgres: {url: 'postgresql+psycopg://u:p@h/db'}}")
    assert config.storage.kind == "postgres"
    assert config.storage.sqlite is None


def test_both_storages_are_refused(tmp_path: Path) -> None:
    text = "storage: {sqlite: {base_dir: s}, postgres: {url: 'postgresql+psycopg://h/db'}}"
    assert refusal(tmp_path, text).endswith(": storage: give one of sqlite or postgres, not both")


def test_tcp_listener_without_token_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path, "grpc: {tcp: {port: 7070}}").endswith(
        ": grpc.tcp: a TCP listener requires token or token_file"
    )
    assert load(tmp_path, "grpc: {tcp: {port: 7070}, token_file: tok}").grpc.tcp is not None
    tcp = load(tmp_path, "grpc: {tcp: {port: 7070}, token: s3cret}").grpc.tcp
    assert tcp is not None and (tcp.host, tcp.port) == ("127.0.0.1", 7070)


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    message = refusal(tmp_path, "grpc: {token: 123456789}")
    assert "123456789" not in message
    assert message.endswith(": grpc.token: expected a string, got an integer")


# --- YAML ------------------------------------------------------------------------------------------


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    message = refusal(tmp_path, "daemons:\n  heartbeat_interval_seconds: 1\n  bad: [1, 2\nwebserver: {}\n")
    assert "invalid YAML at line 4, column" in message


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, "webserver: {port: 1}\nwebserver: {port: 2}\n")
    assert "invalid YAML at line 2, column 1: duplicate key 'webserver'" in message


# --- {env: VAR} ---------------------------------------------------------------------------------------


def test_env_values_at_nested_levels(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        storage:
          postgres: {url: {env: DAGD_PG_URL}}
        run_coordinator:
          config:
            max_concurrent_runs: {env: MAX_RUNS}
            tag_concurrency_limits:
              - {key: {env: TAG_KEY}, value: {applyLimitPerUniqueValue: {env: PER_VALUE}}, limit: {env: LIMIT}}
        grpc: {tcp: {port: {env: PORT}}, token: {env: TOKEN}}
        """,
        environ={
            "DAGD_PG_URL": "postgresql+psycopg://u:p@h/db",
            "MAX_RUNS": "25",
            "TAG_KEY": "use-case",
            "PER_VALUE": "true",
            "LIMIT": "3",
            "PORT": "7070",
            "TOKEN": "s3cret",
        },
    )
    assert config.storage.postgres is not None
    assert config.storage.postgres.url == "postgresql+psycopg://u:p@h/db"
    assert config.run_coordinator.config["max_concurrent_runs"] == "25"  # raw; the class parses it
    queued = validate_section(QueuedRunCoordinatorConfig, config.run_coordinator.config, file="f", prefix="")
    assert queued.max_concurrent_runs == 25
    limit = queued.tag_concurrency_limits[0]
    assert (limit.key, limit.limit, limit.per_unique_value) == ("use-case", 3, True)
    assert config.grpc.tcp is not None and config.grpc.tcp.port == 7070
    assert config.grpc.token == "s3cret"


def test_missing_env_var_names_key_path_and_variable(tmp_path: Path) -> None:
    text = "run_coordinator:\n  config:\n    tag_concurrency_limits:\n      - {key: a, limit: {env: NOPE}}\n"
    assert refusal(tmp_path, text).endswith(
        ": run_coordinator.config.tag_concurrency_limits.0.limit: environment variable NOPE is not set"
    )


def test_env_value_is_validated_like_a_literal(tmp_path: Path) -> None:
    text = "run_coordinator: {config: {max_concurrent_runs: {env: MAX_RUNS}}}"
    assert refusal(tmp_path, text, environ={"MAX_RUNS": "lots"}).endswith(
        ": run_coordinator.config.max_concurrent_runs: expected an integer, got 'lots'"
    )


def test_env_defaults_to_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGD_TEST_WEB_PORT", "8080")
    config = load_instance_config(write(tmp_path, "webserver: {port: {env: DAGD_TEST_WEB_PORT}}"))
    assert config.webserver.port == 8080


# --- tag concurrency limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "exact_value", "per_unique_value"),
    [
        ({"key": "database", "value": "redshift", "limit": 4}, "redshift", False),
        ({"key": "dagd/backfill", "limit": 10}, None, False),
        ({"key": "use-case", "value": {"applyLimitPerUniqueValue": True}, "limit": 3}, None, True),
        ({"key": "use-case", "value": {"applyLimitPerUniqueValue": False}, "limit": 3}, None, False),
        ({"key": "shard", "value": 5, "limit": 1}, "5", False),
    ],
)
def test_tag_limit_value_forms(
    entry: dict[str, object], exact_value: str | None, per_unique_value: bool
) -> None:
    limit = TagConcurrencyLimit.model_validate(entry)
    assert limit.exact_value == exact_value
    assert limit.per_unique_value is per_unique_value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "{applyLimitPerUniqueValue: maybe}",
            "value.applyLimitPerUniqueValue: expected true or false, got 'maybe'",
        ),
        (
            "{applyLimitPerUnique: true}",
            "value: expected a string or {applyLimitPerUniqueValue: true}, got a mapping",
        ),
        ("[a, b]", "value: expected a string or {applyLimitPerUniqueValue: true}, got a list"),
    ],
)
def test_bad_tag_limit_value_is_refused(tmp_path: Path, value: str, expected: str) -> None:
    text = f"run_coordinator: {{config: {{tag_concurrency_limits: [{{key: k, value: {value}, limit: 1}}]}}}}"
    assert refusal(tmp_path, text).endswith(f": run_coordinator.config.tag_concurrency_limits.0.{expected}")


# --- validate_section ---------------------------------------------------------------------------------


def test_validate_section_prefixes_key_paths() -> None:
    with pytest.raises(ConfigError) as info:
        validate_section(
            QueuedRunCoordinatorConfig,
            {"max_launch_retries": -3},
            file="/h/dagd.yaml",
            prefix="run_coordinator.config",
        )
    assert str(info.value) == "/h/dagd.yaml: run_coordinator.config.max_launch_retries: must be >= 0"


def test_validate_section_accepts_none_as_defaults() -> None:
    assert (
        validate_section(QueuedRunCoordinatorConfig, None, file="f", prefix="p")
        == QueuedRunCoordinatorConfig()
    )


# --- display -------------------------------------------------------------------------------------------


def test_dump_public_masks_secrets(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        storage: {postgres: {url: 'postgresql+psycopg://dagd:hunter2@db.example:5432/dagd'}}
        grpc: {tcp: {port: 7070}, token: grpc-secret}
        webserver: {token: web-secret}
        run_launcher: {module: my.launcher, class: Mine, config: {api_key: launcher-secret}}
        """,
    )
    public = config.dump_public()
    text = repr(public)
    for secret in ("hunter2", "grpc-secret", "web-secret", "launcher-secret"):
        assert secret not in text
    assert public["storage"]["postgres"]["url"] == "postgresql+psycopg://dagd:***@db.example:5432/dagd"
    assert public["grpc"]["token"] == "***"
    assert public["webserver"]["token"] == "***"
    assert public["run_coordinator"]["class"] == "QueuedRunCoordinator"  # YAML names, not field names
    assert public["run_launcher"]["config"]["api_key"] == "***"


def test_dump_public_leaves_unset_secrets_alone() -> None:
    public = InstanceConfig().dump_public()
    assert public["grpc"]["token"] is None
    assert public["webserver"]["token"] is None


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://user:pass@host/db", "postgresql+psycopg://user:***@host/db"),
        ("postgresql+psycopg://user@host/db", "postgresql+psycopg://user@host/db"),
        (
            "postgresql+psycopg://host/db?password=pw&sslmode=require",
            "postgresql+psycopg://host/db?password=***&sslmode=require",
        ),
        ("postgresql+psycopg://u:p%40ss@host:5432/db", "postgresql+psycopg://u:***@host:5432/db"),
    ],
)
def test_masked_url(url: str, masked: str) -> None:
    assert masked_url(url) == masked


def test_dump_public_masks_a_plugin_key_the_ui_masks(tmp_path: Path) -> None:
    # Regression: `dagctl instance info --json` printed aws_secret_access_key, which the UI masked.
    from dagd.webserver import masking as ui_masking

    config = load(
        tmp_path,
        """
        run_launcher:
          module: my.launcher
          class: Mine
          config: {aws_secret_access_key: AKIA-secret, broker: 'redis://:redis-secret@cache/0',
                   token_file: secrets/t, region: eu-west-1}
        """,
    )
    public = config.dump_public()
    assert "AKIA-secret" not in repr(public) and "redis-secret" not in repr(public)
    assert public["run_launcher"]["config"] == {
        "aws_secret_access_key": "***",
        "broker": "redis://:***@cache/0",
        "token_file": "secrets/t",
        "region": "eu-west-1",
    }
    # One rule: the UI's second pass finds nothing left to mask.
    assert ui_masking.mask_secrets is mask_secrets
    assert mask_secrets(public) == public


def test_a_plugin_secret_is_not_echoed_in_a_config_error() -> None:
    class Model(BaseModel):
        aws_secret_access_key: int

    with pytest.raises(ConfigError) as info:
        validate_section(
            Model, {"aws_secret_access_key": "AKIA-secret"}, file="f", prefix="run_launcher.config"
        )
    assert "AKIA-secret" not in str(info.value) and "run_launcher.config.aws_secret_access_key" in str(
        info.value
    )


@pytest.mark.parametrize("key", ["grpc", "webserver"])
def test_token_file_expands_the_users_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    # Regression: grpc.token_file "~/tok" was read as $DAGD_HOME/~/tok.
    from dagd.instance.instance import Instance
    from dagd.supervisor.server import read_token
    from dagd.webserver.server import read_access_token

    user_home, dagd_home = tmp_path / "user", tmp_path / "dagd"
    user_home.mkdir()
    dagd_home.mkdir()
    (user_home / "tok").write_text("from-the-users-home\n")
    (dagd_home / "rel").write_text("from-dagd-home\n")
    monkeypatch.setenv("HOME", str(user_home))
    for value, expected in (("~/tok", "from-the-users-home"), ("rel", "from-dagd-home")):
        (dagd_home / "dagd.yaml").write_text(f"{key}: {{token_file: '{value}'}}\n")
        instance = Instance.load(dagd_home)
        read = (
            read_token(instance)
            if key == "grpc"
            else read_access_token(instance.config, dagd_home, instance.config_file)
        )
        assert read == expected
    (dagd_home / "dagd.yaml").write_text(f"{key}: {{token_file: '~/missing'}}\n")
    instance = Instance.load(dagd_home)
    with pytest.raises(ConfigError) as info:
        read_token(instance) if key == "grpc" else read_access_token(
            instance.config, dagd_home, instance.config_file
        )
    assert str(info.value) == (
        f"{dagd_home / 'dagd.yaml'}: {key}.token_file: cannot read {user_home / 'missing'}: No such file or directory"
    )


# --- retention -------------------------------------------------------------------------------------


def test_retention_defaults_keep_everything_but_a_week_of_skipped_sensor_ticks() -> None:
    retention = InstanceConfig().retention
    assert retention.schedule.purge_after_days.model_dump() == {"skipped": -1, "success": -1, "failure": -1}
    assert retention.sensor.purge_after_days.model_dump() == {"skipped": 7, "success": -1, "failure": -1}
    assert retention.runs.purge_after_days == -1


def test_retention_takes_dagsters_shape_or_one_number(tmp_path: Path) -> None:
    retention = load(
        tmp_path,
        """
        retention:
          schedule: {purge_after_days: 30}
          sensor: {purge_after_days: {skipped: 0.5, failure: 90}}
          runs: {purge_after_days: 14}
        """,
    ).retention
    assert retention.schedule.purge_after_days.model_dump() == {"skipped": 30, "success": 30, "failure": 30}
    assert retention.sensor.purge_after_days.model_dump() == {"skipped": 0.5, "success": -1, "failure": 90}
    assert retention.runs.purge_after_days == 14


@pytest.mark.parametrize(
    ("text", "ending"),
    [
        (
            "retention: {sensor: {purge_after_days: {skipped: -2}}}",
            "retention.sensor.purge_after_days.skipped: must be -1 (keep forever) or a number of days >= 0, got -2",
        ),
        (
            "retention: {runs: {purge_after_days: -0.5}}",
            "retention.runs.purge_after_days: must be -1 (keep forever) or a number of days >= 0, got -0.5",
        ),
        (
            "retention: {schedule: {purge_after_days: {started: 1}}}",
            "retention.schedule.purge_after_days.started: unknown key",
        ),
        (
            "retention: {runs: {purge_after_days: forever}}",
            "retention.runs.purge_after_days: expected a number, got 'forever'",
        ),
        ("retention: {batch_size: 0}", "retention.batch_size: must be >= 1"),
    ],
)
def test_bad_retention_is_refused_in_one_line(tmp_path: Path, text: str, ending: str) -> None:
    assert refusal(tmp_path, text).endswith(": " + ending)
