"""Fuzzing the files a user writes (SPEC §3, §8): ``dagd.yaml`` and ``workspace.yaml``.

Two depths, cheapest first:

1. In process, many examples: documents generated from the config schema itself (every section
   and key, with values of every type, unknown keys, random scalars) and raw text through the
   loader; random workspace documents through the workspace parser. Either they load, or they
   fail with one :class:`ConfigError` line that names the file. Nothing else may escape.
2. Through ``dagctl dev``, a few examples in parallel batches: each instance file carries at least
   one fault (the kinds below) on top of random valid sections; each workspace file is broken.
   The command must exit 2 with its last stderr line ``dagctl: error: ...`` naming the file, no
   traceback anywhere, and nothing left running.
(Broken definitions files are fed to a live supervisor in ``test_fuzz_live.py``.)

The regression tests at the end pin the bugs this suite found.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import tempfile
from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from helpers.procs import DAGCTL, processes_for_home
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dagd.errors import ConfigError
from dagd.instance.config import InstanceConfig
from dagd.instance.instance import Instance
from dagd.workspace import targets_from_workspace_file

# No "explain" phase: tracing a deep YAML parse line by line takes minutes.
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
DEFS = pathlib.Path(__file__).with_name("fuzz_defs.py")
EXIT_BAD_INPUT = 2


def fuzz(examples: int) -> settings:
    """See ``test_fuzz_live.fuzz``: ``DAGD_FUZZ_SCALE`` multiplies the examples."""
    return settings(FUZZ, max_examples=examples * int(os.environ.get("DAGD_FUZZ_SCALE", "1")))


# -- strategies: instance files ----------------------------------------------------------------

SCALARS = st.one_of(
    st.integers(-(2**40), 2**40),
    st.sampled_from([-1, 0, 1, 2**31, 2**63, -(2**63), 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.sampled_from(
        ["", "storage", "/proc/nope/x", "127.0.0.1", "192.0.2.1", "localhost", "json", "os.path",
         "dagd.run_coordinator", "QueuedRunCoordinator", "no_such_module", "postgresql+psycopg://",
         "sqlite:///x", "* * * * *", "UTC", "1e400", "-5", "true", "~", "\t"]
    ),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) in (Union, UnionType):
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def documents(model: type[BaseModel] = InstanceConfig, depth: int = 0) -> st.SearchStrategy[Any]:
    """A mapping shaped like ``model``: a random subset of its keys, each with a value that is
    usually of a plausible shape and sometimes anything at all, plus the odd unknown key."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        value = documents(sub, depth + 1) if sub is not None and depth < 3 else VALUES
        fields[field.alias or name] = st.one_of(value, VALUES) if sub is not None else value
    keys = st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=4) if fields else st.just([])

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        doc = {key: draw(fields[key]) for key in draw(keys)}
        if draw(st.integers(0, 9)) == 0:
            doc[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
        return doc

    return build()


def yaml_text(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


RAW_TEXT = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
    st.sampled_from(
        ["a: &a [*a]\n", "a: [\n", "\tstorage: {}\n", "storage: {}\nstorage: {}\n", "!!python/object:os.system {}\n",
         "- 1\n- 2\n", "'just a string'\n", "a: " + "[" * 600 + "]" * 600 + "\n", "storage:\n  sqlite: {base_dir: \x00}\n",
         "? [a, b]\n: 1\n", "&x a: 1\n", "%YAML 9.9\n---\na: 1\n", "a: !!binary AAAA\n", "run_coordinator: *nope\n"]
    ),
)  # fmt: skip


def check_config_error(exc: ConfigError, file: pathlib.Path) -> None:
    message = str(exc)
    assert "\n" not in message, f"more than one line: {message!r}"
    assert message.startswith(f"{file}: ") or message.startswith(str(file.parent)), message
    assert "Traceback" not in message


def load_like_dagctl(home: pathlib.Path) -> None:
    """What ``dagctl dev`` does with the instance file before anything starts."""
    instance = Instance.load(home)
    try:
        sqlite = instance.config.storage.sqlite
        # Resolving the URL creates the SQLite directory: only inside the test's home, never a
        # random absolute path (the uncreatable-directory case has its own regression test).
        if sqlite is None or not pathlib.Path(sqlite.base_dir).expanduser().is_absolute():
            instance.storage_url  # noqa: B018
    finally:
        instance.close()


@pytest.mark.timeout(120)
@fuzz(150)
@given(st.one_of(documents().map(yaml_text), RAW_TEXT))
def test_random_instance_files_load_or_fail_with_one_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = pathlib.Path(tmp) / "home"
        home.mkdir()
        file = home / "dagd.yaml"
        file.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_like_dagctl(home)
        except ConfigError as exc:
            check_config_error(exc, file)


# -- strategies: workspace files ---------------------------------------------------------------

ENTRY_VALUES = st.one_of(
    VALUES,
    st.sampled_from(["defs.py", "missing.py", "../../etc/passwd", "pkg.defs", "", ".", "/"]),
    st.fixed_dictionaries(
        {},
        optional={
            "relative_path": st.one_of(st.sampled_from(["defs.py", "nope.py"]), VALUES),
            "module_name": st.one_of(st.sampled_from(["fuzz_defs", "no.such"]), VALUES),
            "working_directory": st.one_of(st.sampled_from([".", "/nope"]), VALUES),
            "location_name": st.one_of(st.just("x"), VALUES),
            "attribute": st.one_of(st.just("defs"), VALUES),
        },
    ),
)
WORKSPACES = st.one_of(
    st.fixed_dictionaries(
        {
            "load_from": st.one_of(
                st.lists(
                    st.one_of(
                        st.dictionaries(
                            st.sampled_from(["python_file", "python_module", "grpc_server", "x"]),
                            ENTRY_VALUES,
                            max_size=2,
                        ),
                        VALUES,
                    ),
                    max_size=3,
                ),
                VALUES,
            )
        }
    ).map(yaml_text),
    documents(InstanceConfig).map(yaml_text),
    RAW_TEXT,
)


@pytest.mark.timeout(120)
@fuzz(150)
@given(WORKSPACES)
def test_random_workspace_files_parse_or_fail_with_one_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = pathlib.Path(tmp) / "workspace.yaml"
        file.write_text(text, encoding="utf-8", errors="surrogatepass")
        (file.parent / "defs.py").write_text(DEFS.read_text())
        try:
            targets_from_workspace_file(file)
        except ConfigError as exc:
            check_config_error(exc, file)


# -- through dagctl dev ------------------------------------------------------------------------

# Each fault makes any instance file it is merged into fail at start, and names what the error
# must mention. The rest of the document is random but valid, so the fault is what is reported.
FAULTS: dict[str, tuple[dict[str, Any] | str, str]] = {
    "unknown-key": ({"bogus_section": 1}, "bogus_section"),
    "wrong-type": ({"run_monitoring": {"poll_interval_seconds": "often"}}, "poll_interval_seconds"),
    "out-of-range": ({"run_coordinator": {"config": {"max_concurrent_runs": -7}}}, "max_concurrent_runs"),
    "tcp-without-token": ({"grpc": {"tcp": {"host": "127.0.0.1", "port": 0}}}, "grpc.tcp"),
    "tls-files-missing": (
        {"grpc": {"tcp": {"host": "127.0.0.1", "port": 0}, "token": "t",
                  "tls": {"cert_file": "/nope/cert.pem", "key_file": "/nope/key.pem"}}},
        "grpc.tls",
    ),  # fmt: skip
    "unbindable-host": ({"grpc": {"tcp": {"host": "192.0.2.1", "port": 0}, "token": "t"}}, "grpc.tcp"),
    "coordinator-not-importable": ({"run_coordinator": {"module": "no_such_mod", "class": "X"}}, "no_such_mod"),
    "coordinator-wrong-class": ({"run_coordinator": {"module": "json", "class": "JSONDecoder"}}, "run_coordinator"),
    "launcher-wrong-class": ({"run_launcher": {"module": "json", "class": "JSONEncoder"}}, "run_launcher"),
    "sqlite-dir-uncreatable": ({"storage": {"sqlite": {"base_dir": "/proc/nope/storage"}}}, "base_dir"),
    "env-unset": ({"storage": {"postgres": {"url": {"env": "DAGD_FUZZ_UNSET_VARIABLE"}}}}, "DAGD_FUZZ_UNSET_VARIABLE"),
    "self-referencing-alias": ("a: &a [*a]\n", "nested too deeply"),
    "yaml-syntax": ("storage: {sqlite: {base_dir: x}\n", "invalid YAML"),
    "duplicate-key": ("storage: {}\nstorage: {}\n", "duplicate key"),
    "not-a-mapping": ("- storage\n", "mapping"),
}  # fmt: skip

# Random sections that are valid on their own (the fault decides the outcome).
VALID_NOISE = st.fixed_dictionaries(
    {},
    optional={
        "run_monitoring": st.fixed_dictionaries(
            {}, optional={"poll_interval_seconds": st.floats(0.5, 60), "enabled": st.booleans()}
        ),
        "scheduler": st.just({}),
        "daemons": st.fixed_dictionaries({}, optional={"heartbeat_interval_seconds": st.floats(1, 5)}),
        "metrics": st.just({}),
    },
)


def merged(noise: dict[str, Any], fault: dict[str, Any] | str) -> str:
    if isinstance(fault, str):
        return fault
    out = dict(noise)
    for key, value in fault.items():
        out[key] = (
            {**out[key], **value} if isinstance(out.get(key), dict) and isinstance(value, dict) else value
        )
    return yaml_text(out)


@dataclass
class CliRun:
    home: pathlib.Path
    file: pathlib.Path
    mention: str
    proc: subprocess.Popen[str]


def run_dagctl_dev_batch(
    tmp: pathlib.Path, cases: list[tuple[str, str, str]], args: list[str], timeout: float = 60
) -> None:
    """Run ``dagctl dev`` once per (instance file text, workspace text, mention), all at once."""
    runs = []
    for index, (config, workspace, mention) in enumerate(cases):
        base = tmp / f"case{index}"
        home = base / "home"
        home.mkdir(parents=True)
        (home / "dagd.yaml").write_text(config)
        (base / "workspace.yaml").write_text(workspace)
        (base / "defs.py").write_text(DEFS.read_text())
        proc = subprocess.Popen(
            [*DAGCTL, "dev", *args], cwd=base, env={**os.environ, "DAGD_HOME": str(home)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        named = home / "dagd.yaml" if args == ["-f", "defs.py"] else base / "workspace.yaml"
        runs.append(CliRun(home, named, mention, proc))
    try:
        for run in runs:
            _, stderr = run.proc.communicate(timeout=timeout)
            assert "Traceback" not in stderr, stderr[-3000:]
            lines = stderr.strip().splitlines()
            assert lines and lines[-1].startswith("dagctl: error: "), (run.proc.returncode, stderr[-3000:])
            assert [ln for ln in lines if ln.startswith("dagctl: error:")] == lines[-1:], stderr[-3000:]
            assert run.proc.returncode == EXIT_BAD_INPUT, (run.proc.returncode, lines[-1])
            assert str(run.file.name) in lines[-1], lines[-1]
            assert run.mention in lines[-1], (run.mention, lines[-1])
            assert not processes_for_home(run.home)
    finally:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(timeout=10)


GOOD_WORKSPACE = "load_from:\n  - python_file: defs.py\n"


@pytest.mark.timeout(120)
@fuzz(1)
@given(
    st.lists(st.sampled_from(sorted(FAULTS)), min_size=3, max_size=3, unique=True),
    st.lists(VALID_NOISE, min_size=3, max_size=3),
)
def test_broken_instance_files_through_dagctl_dev(kinds: list[str], noise: list[dict[str, Any]]) -> None:
    """Three faults drawn at random, one ``dagctl dev`` each, all at once (every run is a Python
    start-up, 1-2 s of CPU, so the in-process tests above carry the breadth)."""
    batch = [
        (merged(n, FAULTS[k][0]), GOOD_WORKSPACE, FAULTS[k][1]) for k, n in zip(kinds, noise, strict=True)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        run_dagctl_dev_batch(pathlib.Path(tmp), batch, ["-f", "defs.py"])


WORKSPACE_FAULTS: dict[str, tuple[str, str]] = {
    "yaml-syntax": ("load_from: [\n", "invalid YAML"),
    "empty": ("", "load_from"),
    "not-a-list": ("load_from: defs.py\n", "load_from"),
    "missing-file": ("load_from:\n  - python_file: missing.py\n", "missing.py"),
    "unknown-kind": ("load_from:\n  - grpc_server: {host: x}\n", "grpc_server"),
    "two-kinds": ("load_from:\n  - {python_file: defs.py, python_module: x}\n", "load_from.0"),
    "unknown-key": ("load_from:\n  - python_file: defs.py\nextra: 1\n", "extra"),
    "unknown-entry-key": (
        "load_from:\n  - python_file: {relative_path: defs.py, relative_pth: x}\n",
        "load_from.0.python_file.relative_pth: unknown key",
    ),
    "duplicate-names": ("load_from:\n  - python_file: defs.py\n  - python_file: ./defs.py\n", "defs"),
    "no-path": ("load_from:\n  - python_file: {working_directory: .}\n", "relative_path"),
    "binary": ("\x00\x01\x02", "invalid YAML"),
}


@pytest.mark.timeout(120)
@fuzz(1)
@given(st.lists(st.sampled_from(sorted(WORKSPACE_FAULTS)), min_size=2, max_size=2, unique=True))
def test_broken_workspace_files_through_dagctl_dev(kinds: list[str]) -> None:
    batch = [("", *WORKSPACE_FAULTS[kind]) for kind in kinds]
    with tempfile.TemporaryDirectory() as tmp:
        run_dagctl_dev_batch(pathlib.Path(tmp), batch, ["-w", "workspace.yaml"])


# -- regressions: bugs this suite found ----------------------------------------------------------


def config_error(text: str, tmp_path: pathlib.Path) -> str:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagd.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        instance = Instance.load(home)
        try:
            instance.storage_url  # noqa: B018
            instance.make_coordinator()
            instance.make_launcher()
        finally:
            instance.close()
    check_config_error(caught.value, home / "dagd.yaml")
    return str(caught.value)


@pytest.mark.timeout(30)
def test_regression_self_referencing_yaml_alias_is_config_error_not_recursion_error(
    tmp_path: pathlib.Path,
) -> None:
    assert "nested too deeply" in config_error("a: &a [*a]\n", tmp_path)


@pytest.mark.timeout(30)
def test_regression_deeply_nested_yaml_is_config_error_not_recursion_error(tmp_path: pathlib.Path) -> None:
    deep = "a: " + "[" * 700 + "]" * 700 + "\n"
    assert "nested too deeply" in config_error(deep, tmp_path)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(deep)
    with pytest.raises(ConfigError, match="nested too deeply"):
        targets_from_workspace_file(workspace)


@pytest.mark.timeout(30)
def test_regression_uncreatable_sqlite_dir_is_config_error_not_traceback(tmp_path: pathlib.Path) -> None:
    message = config_error("storage: {sqlite: {base_dir: /proc/nope/storage}}\n", tmp_path)
    assert "storage.sqlite.base_dir: cannot create /proc/nope/storage" in message


@pytest.mark.timeout(30)
def test_regression_plugin_class_of_wrong_type_is_config_error_not_type_error(tmp_path: pathlib.Path) -> None:
    message = config_error("run_coordinator: {module: json, class: JSONDecoder}\n", tmp_path)
    assert "run_coordinator.class: json.JSONDecoder is not a subclass of" in message
    message = config_error("run_launcher: {module: json, class: JSONEncoder}\n", tmp_path)
    assert "run_launcher.class: json.JSONEncoder is not a subclass of" in message


def listen_error(tmp_path: pathlib.Path, config: str) -> str:
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from dagd.supervisor.server import listen_tcp

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagd.yaml").write_text(config)
    instance = Instance.load(home)
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    try:
        with pytest.raises(ConfigError) as caught:
            listen_tcp(server, instance)
    finally:
        server.stop(None)
    check_config_error(caught.value, home / "dagd.yaml")
    return str(caught.value)


@pytest.mark.timeout(30)
def test_regression_missing_tls_files_are_config_error_not_traceback(tmp_path: pathlib.Path) -> None:
    tls = "tls: {cert_file: /nope/c.pem, key_file: /nope/k.pem}"
    message = listen_error(tmp_path, f"grpc: {{tcp: {{host: 127.0.0.1, port: 0}}, token: t, {tls}}}\n")
    assert "grpc.tls.key_file: cannot read /nope/k.pem" in message


@pytest.mark.timeout(30)
def test_regression_unbindable_tcp_host_is_config_error_not_traceback(tmp_path: pathlib.Path) -> None:
    message = listen_error(tmp_path, "grpc: {tcp: {host: 192.0.2.1, port: 0}, token: t}\n")
    assert "grpc.tcp: cannot listen on 192.0.2.1:0" in message


@pytest.mark.timeout(30)
def test_regression_non_string_workspace_fields_are_config_error_not_type_error(
    tmp_path: pathlib.Path,
) -> None:
    # Was: TypeError (`path / 1`) for `working_directory: 1`, found by the workspace fuzzer.
    (tmp_path / "defs.py").write_text(DEFS.read_text())
    for key in ("working_directory", "location_name", "attribute"):
        file = tmp_path / "workspace.yaml"
        file.write_text(f"load_from:\n  - python_file:\n      relative_path: defs.py\n      {key}: 1\n")
        with pytest.raises(ConfigError, match=f"load_from.0.python_file.{key}: expected a string, got int"):
            targets_from_workspace_file(file)


@pytest.mark.timeout(30)
def test_regression_unknown_key_in_a_code_location_is_refused(tmp_path: pathlib.Path) -> None:
    # Was: ignored, so a misspelt `location_name` or `working_directory` silently had no effect.
    (tmp_path / "defs.py").write_text(DEFS.read_text())
    file = tmp_path / "workspace.yaml"
    for kind, entry in (("python_file", "relative_path: defs.py"), ("python_module", "module_name: defs")):
        file.write_text(f"load_from:\n  - {kind}:\n      {entry}\n      location_nmae: x\n")
        with pytest.raises(ConfigError, match=f"load_from.0.{kind}.location_nmae: unknown key"):
            targets_from_workspace_file(file)


def load_error(tmp_path: pathlib.Path, code: str) -> str:
    from dagd.errors import DefinitionError
    from dagd.workspace import load_target, target_from_file

    file = tmp_path / "broken_defs.py"
    file.write_text(code)
    with pytest.raises(DefinitionError) as caught:
        load_target(target_from_file(file))
    return str(caught.value)


@pytest.mark.timeout(30)
def test_regression_multi_line_import_error_is_a_one_line_load_error(tmp_path: pathlib.Path) -> None:
    message = load_error(tmp_path, "raise ValueError('first\\nsecond')\n")
    assert "\n" not in message and "ValueError: first second" in message


@pytest.mark.timeout(30)
def test_regression_system_exit_at_import_is_a_load_error_not_a_dead_watcher(tmp_path: pathlib.Path) -> None:
    # Was: SystemExit escaped load_target and silently ended the code server's watcher thread,
    # so later edits were never loaded; KeyboardInterrupt took the code server down.
    assert "SystemExit: 3" in load_error(tmp_path, "raise SystemExit(3)\n")
    assert "KeyboardInterrupt" in load_error(tmp_path, "raise KeyboardInterrupt\n")


# -- dagctl's own parsing of what a user types --------------------------------------------------

JSONISH = st.one_of(
    st.text(max_size=60),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(json.dumps),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


def dagctl_in_process(home: pathlib.Path, *args: str) -> tuple[int, str]:
    """``dagctl ARGS`` in this process: (exit code, stderr)."""
    import contextlib
    import io
    import sys

    from dagd.client import cli

    stderr, stdout = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["dagctl", "--home", str(home), *args]
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    return code, stderr.getvalue()


@pytest.mark.timeout(120)
@fuzz(150)
@given(
    config=JSONISH,
    tags=st.lists(st.text(max_size=20), max_size=3),
    priority=st.one_of(st.none(), st.text(max_size=8), st.integers().map(str)),
)
def test_dagctl_submit_arguments_fail_with_one_line(
    config: str, tags: list[str], priority: str | None
) -> None:
    # No supervisor runs here: good arguments end "no supervisor is running" (exit 4), bad ones
    # are refused before that (exit 2); either way one line, never a traceback.
    with tempfile.TemporaryDirectory() as tmp:
        args = ["submit", "hello", "--config", config]
        for tag in tags:
            args += ["--tag", tag]
        if priority is not None:
            args += ["--priority", priority]
        code, stderr = dagctl_in_process(pathlib.Path(tmp), *args)
    assert code in (EXIT_BAD_INPUT, 4), (code, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dagctl: error: "), stderr[-2000:]


@pytest.mark.timeout(30)
def test_regression_dagctl_config_with_huge_number_or_deep_nesting_is_one_line_not_traceback(
    tmp_path: pathlib.Path,
) -> None:
    # Was: a ValueError / RecursionError traceback from json.loads in `dagctl submit --config`.
    cases = {
        "9" * 5000: "dagctl: error: --config is not valid JSON: a number is too long",
        "[" * 5000 + "]" * 5000: "dagctl: error: --config is nested too deeply",
    }
    for config, expected in cases.items():
        code, stderr = dagctl_in_process(tmp_path, "submit", "hello", "--config", config)
        assert (code, stderr.strip()) == (EXIT_BAD_INPUT, expected)
