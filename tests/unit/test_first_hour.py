"""Pure pieces of issue 18 ("the first hour"): tables that never cut an id, the Bearer rule, bad
schedules refused at definition time, missing modules refused before anything starts, and the web
UI reading only its own section of dagd.yaml."""

from __future__ import annotations

import pathlib

import pytest

from dagd.bearer import bearer_matches
from dagd.client.table import Cell, Column, render
from dagd.errors import ConfigError, DefinitionError
from dagd.instance.config import load_instance_config
from dagd.workspace import target_from_module, targets_from_workspace_file

RUN_ID = "aba4431e-bee2-4d1c-9a57-0123456789ab"
COLUMNS = [
    Column("RUN ID", whole=True), Column("JOB", whole=True), Column("STATUS"),
    Column("PRIORITY", drop=2), Column("CREATED", drop=1), Column("ENDED", drop=3),
]  # fmt: skip
ROW = [RUN_ID, "hello", Cell("SUCCESS", "green"), "0", "2026-12-04T16:59:01.123Z", "-"]


@pytest.mark.parametrize("width", [None, 200, 80, 60, 40, 20])
def test_tables_never_cut_an_id_at_any_width(width: int | None) -> None:
    lines = render(COLUMNS, [ROW, ROW], width)
    assert sum(RUN_ID in line for line in lines) == 2, lines
    assert all("…" not in line for line in lines)


def test_a_narrow_terminal_drops_optional_columns_first() -> None:
    wide = render(COLUMNS, [ROW], None)
    assert wide[0].split() == ["RUN", "ID", "JOB", "STATUS", "PRIORITY", "CREATED", "ENDED"]
    narrow = render(COLUMNS, [ROW], 80)
    assert all(len(line) <= 80 for line in narrow), narrow
    assert narrow[0].split() == ["RUN", "ID", "JOB", "STATUS", "CREATED"], narrow  # ENDED, PRIORITY gone
    assert render(COLUMNS, [ROW], 70)[0].split() == ["RUN", "ID", "JOB", "STATUS"]


def test_a_long_cell_wraps_at_spaces_and_never_breaks_an_id() -> None:
    columns = [Column("TICK", whole=True), Column("RUNS"), Column("ERROR")]
    runs = " ".join([RUN_ID] * 3)
    lines = render(columns, [["7", runs, "boom"]], 60)
    assert sum(line.count(RUN_ID) for line in lines) == 3, lines


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR   s3cret"])
def test_the_bearer_scheme_is_case_insensitive(header: str) -> None:
    assert bearer_matches(header, "s3cret")
    assert bearer_matches(header.encode(), "s3cret")


@pytest.mark.parametrize(
    "header", ["", "s3cret", "Basic s3cret", "Bearer s3cre", "Bearer s3cret ", "Bearers3cret"]
)
def test_anything_but_the_token_with_the_bearer_scheme_is_refused(header: str) -> None:
    assert not bearer_matches(header, "s3cret")
    assert not bearer_matches(None, "s3cret")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"cron_schedule": "61 * * * *"}, "minute must be 0-59"),
        ({"cron_schedule": "* * * *"}, "expected 5 fields"),
        ({"cron_schedule": "0 * * * *", "execution_timezone": "Mars/Base"}, "unknown timezone 'Mars/Base'"),
    ],
)
def test_a_bad_schedule_is_refused_when_it_is_defined(kwargs: dict[str, str], reason: str) -> None:
    from dagd import job, schedule

    @job
    def noop(context: object) -> None:
        pass

    with pytest.raises(DefinitionError, match=f"schedule bad_one: .*{reason}"):

        @schedule(job=noop, **kwargs)  # type: ignore[arg-type]
        def bad_one(context: object) -> None:
            pass


def test_a_missing_module_is_refused_like_a_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(
        ConfigError, match="-m no_such_module_for_dagd: no module named 'no_such_module_for_dagd'"
    ):
        target_from_module("no_such_module_for_dagd", working_directory=str(tmp_path))
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('a check must not import user code')\n")
    (package / "defs.py").write_text("")
    assert target_from_module("pkg.defs", working_directory=str(tmp_path)).python_module == "pkg.defs"
    with pytest.raises(ConfigError, match="no module named 'pkg.nope' in package pkg"):
        target_from_module("pkg.nope", working_directory=str(tmp_path))
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module: pkg.missing\n")
    with pytest.raises(ConfigError, match=r"load_from.0.python_module: no module named 'pkg.missing'"):
        targets_from_workspace_file(workspace)


def test_the_web_ui_reads_only_its_own_section(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "dagd.yaml"
    config.write_text(
        "storage:\n  postgres:\n    url: {env: DAGD_TEST_NEVER_SET_URL}\n"
        "run_launcher: {module: no.such.module, class: Nope}\n"
        "webserver:\n  port: {env: DAGD_TEST_WEB_PORT}\n"
    )
    with pytest.raises(ConfigError, match="DAGD_TEST_NEVER_SET_URL is not set"):
        load_instance_config(config, environ={"DAGD_TEST_WEB_PORT": "3123"})
    web = load_instance_config(config, environ={"DAGD_TEST_WEB_PORT": "3123"}, sections=("webserver",))
    assert web.webserver.port == 3123
    with pytest.raises(ConfigError, match="DAGD_TEST_WEB_PORT is not set"):
        load_instance_config(config, environ={}, sections=("webserver",))  # its own keys still count
