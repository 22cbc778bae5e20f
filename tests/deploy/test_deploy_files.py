"""The deployment files under deploy/ (docs/deploy.md), checked offline with the tools that judge them.

- systemd units: ``systemd-analyze verify`` with nothing on stderr. verify also checks that the
  ExecStart binary exists, and the units name where docs/deploy.md installs dagctl
  (``/opt/dagd/venv/bin/dagctl``); each is verified as a copy in which that one path, and nothing
  else, is replaced by this virtual environment's ``dagctl``.
- the Dockerfile: hadolint, and every path it copies from the build context exists.
- Kubernetes: ``kubectl kustomize`` renders the base and kubernetes-validate (strict) accepts every
  object for each Kubernetes version we support.
- Prometheus rules: ``promtool check rules``, and ``promtool test rules`` on a few alerts; the rules
  and the Grafana dashboard only name metrics that dagd exports.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from dagd.instance.config import load_instance_config
from dagd.supervisor.server import RUN_SERVICE

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = pathlib.Path(sys.executable).parent
INSTALLED_DAGCTL = "/opt/dagd/venv/bin/dagctl"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
# Kubernetes' native gRPC probes are GA from 1.27; kubernetes-validate bundles schemas up to 1.37.
KUBERNETES_VERSIONS = [f"1.{minor}.0" for minor in range(27, 38)]


def tool(name: str) -> str:
    """A tool from this virtual environment (dev extras) or the system (scripts/test installs it)."""
    found = shutil.which(name, path=f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin")
    if found is None:
        pytest.fail(f"{name} is missing: scripts/test installs it (dev extras or apt-get)")
    return found


def unit_settings(path: pathlib.Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_three_units_exist() -> None:
    assert [u.name for u in UNITS] == ["dagd-webserver.service", "dagd-worker.service", "dagd.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verify_accepts_the_unit(unit: pathlib.Path, tmp_path: pathlib.Path) -> None:
    text = unit.read_text()
    exec_start = unit_settings(unit)["ExecStart"]
    assert len(exec_start) == 1 and exec_start[0].startswith(INSTALLED_DAGCTL + " "), exec_start
    dagctl = VENV_BIN / "dagctl"
    assert dagctl.exists(), dagctl
    copy = tmp_path / unit.name
    copy.write_text(text.replace(INSTALLED_DAGCTL, str(dagctl)))
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize("name", ["dagd.service", "dagd-worker.service"])
def test_supervisor_and_worker_units_are_notify_with_a_watchdog(name: str) -> None:
    settings = unit_settings(DEPLOY / "systemd" / name)
    assert settings["Type"] == ["notify"]
    assert float(settings["WatchdogSec"][0]) > 0
    assert settings["Restart"] == ["always"] and settings["KillMode"] == ["mixed"]
    assert settings["User"] == ["dagd"] and settings["StateDirectory"] and settings["RuntimeDirectory"]
    assert settings["NoNewPrivileges"] == ["yes"] and settings["ProtectSystem"] == ["strict"]


def test_the_units_run_the_documented_commands() -> None:
    commands = {u.name: unit_settings(u)["ExecStart"][0].split()[1:3] for u in UNITS}
    assert commands == {
        "dagd.service": ["daemon", "run"],
        "dagd-worker.service": ["worker", "run"],
        "dagd-webserver.service": ["webserver", "--host"],
    }


DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_every_path_the_dockerfile_copies_from_the_build_context_exists() -> None:
    """The build context is the repository root (docs/deploy.md: docker build -f deploy/docker/Dockerfile .)."""
    copied = []
    for word, rest in dockerfile_instructions():
        if word not in ("COPY", "ADD"):
            continue
        args = rest.split()
        if any(a.startswith("--from=") for a in args):
            continue  # from another stage, not the context
        sources = [a for a in args if not a.startswith("--")][:-1]
        copied += sources
    assert copied, "no COPY from the build context"
    for source in copied:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"


def test_the_image_is_multi_stage_non_root_with_dagctl_entrypoint_and_a_local_healthcheck() -> None:
    instructions = dockerfile_instructions()
    words = [w for w, _ in instructions]
    assert words.count("FROM") >= 2
    user = [rest for w, rest in instructions if w == "USER"]
    assert user and not user[-1].startswith(("root", "0")), user
    assert [rest for w, rest in instructions if w == "ENTRYPOINT"] == ['["dagctl"]']
    healthcheck = next(rest for w, rest in instructions if w == "HEALTHCHECK")
    assert '["dagctl", "health", "--local"]' in healthcheck


def test_the_build_stage_makes_a_wheel_with_dagctl_and_every_data_file(tmp_path: pathlib.Path) -> None:
    """The Dockerfile's build stage, replayed: only what it copies, then the wheel it builds (our
    own, without dependencies: those come from the package index, which a test has no business
    downloading). The runtime stage installs this wheel."""
    import zipfile

    context = tmp_path / "src"
    context.mkdir()
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            *sources, _ = rest.split()
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, context / source)
    # From inside the context, as the build stage does (setuptools fails on a relative project path).
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    result = subprocess.run(
        [*pip, "--wheel-dir", str(tmp_path / "wheels"), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("dagd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "dagd").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)[:10]}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "dagctl = dagd.client.cli:entry" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(DEPLOY / "kubernetes")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_kustomize_renders_the_expected_objects(rendered: list[dict]) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in rendered)
    assert [k for k in kinds if not k.startswith("ConfigMap/")] == [
        "CronJob/dagd-migrate",
        "Deployment/dagd-supervisor",
        "Deployment/dagd-webserver",
        "Deployment/dagd-worker",
        "PodDisruptionBudget/dagd-webserver",
        "PodDisruptionBudget/dagd-worker",
        "Service/dagd-supervisor",
        "Service/dagd-webserver",
    ]
    assert any(k.startswith("ConfigMap/dagd-config-") for k in kinds), kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_strict_accepts_every_object(rendered: list[dict], version: str) -> None:
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc}")


def by_name(rendered: list[dict], kind: str, name: str) -> dict:
    return next(d for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name)


def test_supervisor_pods_stand_by_and_probe_the_process_not_the_database(rendered: list[dict]) -> None:
    deployment = by_name(rendered, "Deployment", "dagd-supervisor")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:3] == ["daemon", "run", "--standby"]
    # Liveness: the overall health service "" (no service named); readiness: leading.
    assert "grpc" in container["livenessProbe"] and not container["livenessProbe"]["grpc"].get("service")
    assert container["readinessProbe"]["grpc"]["service"] == RUN_SERVICE
    assert pod["securityContext"]["runAsNonRoot"] is True
    secret_refs = {ref["secretRef"]["name"] for ref in container["envFrom"]}
    assert secret_refs == {"dagd-secrets"}


def test_the_migration_is_a_template_run_by_hand_with_the_same_config(rendered: list[dict]) -> None:
    cron = by_name(rendered, "CronJob", "dagd-migrate")
    assert cron["spec"]["suspend"] is True
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["instance", "migrate"]
    supervisor = by_name(rendered, "Deployment", "dagd-supervisor")["spec"]["template"]["spec"]
    config = {v["name"]: v for v in pod["volumes"]}["config"]
    assert config in supervisor["volumes"]  # the same (hash-named) ConfigMap, so the same dagd.yaml


def test_the_configmap_holds_a_dagd_yaml_that_dagd_accepts(
    rendered: list[dict], tmp_path: pathlib.Path
) -> None:
    config_map = next(d for d in rendered if d["kind"] == "ConfigMap")
    path = tmp_path / "dagd.yaml"
    path.write_text(config_map["data"]["dagd.yaml"])
    # What the pods get from the Secret dagd-secrets.
    environ = {
        "DAGD_PG_URL": "postgresql+psycopg://dagd@db:5432/dagd",
        "DAGD_TOKEN": "t",
        "DAGD_WEB_TOKEN": "w",
        "DAGD_BROKER_URL": "amqp://guest:guest@broker:5672//",
    }
    config = load_instance_config(path, environ)
    assert config.storage.postgres is not None
    assert config.grpc.tcp is not None and config.grpc.tcp.port == 7420
    assert config.metrics.port == 9464


RULES = DEPLOY / "prometheus" / "dagd-alerts.yaml"


def test_promtool_checks_the_alert_rules() -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass(tmp_path: pathlib.Path) -> None:
    """Alerts fire on the series they are about, and not on healthy ones."""
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    no_leader = next(r for r in rules if r["alert"] == "DagdNoLeader")
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'dagd_daemon_up{daemon="sensor", job="dagd"}', "values": "1 1 0 0 0 0"},
                    {"series": 'dagd_daemon_up{daemon="scheduler", job="dagd"}', "values": "1 1 1 1 1 1"},
                    {"series": 'dagd_storage_up{job="dagd"}', "values": "1 1 1 1 1 1"},
                    {"series": 'dagd_supervisor_info{job="dagd", version="0.1.0"}', "values": "1 1 1 1 1 1"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "DagdDaemonUnhealthy",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "daemon": "sensor", "job": "dagd"},
                                "exp_annotations": {
                                    "summary": "dagd daemon sensor is not healthy",
                                    "description": "The sensor daemon has been down or without progress "
                                    "for 2 minutes (`dagctl daemons status`, `dagctl daemons logs sensor`).",
                                },
                            }
                        ],
                    },
                    {"eval_time": "5m", "alertname": "DagdStorageDown", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "DagdNoLeader", "exp_alerts": []},
                ],
            },
            {
                "interval": "1m",
                "input_series": [{"series": 'dagd_storage_up{job="dagd"}', "values": "1 1 1 1 1 1 1"}],
                "alert_rule_test": [
                    {
                        "eval_time": "6m",
                        "alertname": "DagdNoLeader",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical"},
                                "exp_annotations": no_leader["annotations"],
                            }
                        ],
                    }
                ],
            },
        ],
    }
    spec = tmp_path / "dagd-alerts.test.yaml"
    spec.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def exported_metric_names() -> set[str]:
    """What dagd/supervisor/metrics.py exports, as Prometheus names (counters get _total, info _info)."""
    source = (ROOT / "dagd" / "supervisor" / "metrics.py").read_text()
    names = set()
    for kind, name in re.findall(r"(Gauge|Counter|Info)MetricFamily\(\s*\"([a-z_]+)\"", source):
        names.add(name + {"Gauge": "", "Counter": "_total", "Info": "_info"}[kind])
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(dagd_[a-z_]+)\b", expr))


def test_rules_and_dashboard_name_only_metrics_dagd_exports() -> None:
    exported = exported_metric_names()
    assert {"dagd_daemon_up", "dagd_daemon_restarts_total", "dagd_supervisor_info", "dagd_runs"} <= exported
    rules = yaml.safe_load(RULES.read_text())
    rule_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dagd-dashboard.json").read_text())
    panel_exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert rule_exprs and panel_exprs
    for expr in rule_exprs + panel_exprs:
        assert metric_names_in(expr) and metric_names_in(expr) <= exported, expr
    used = set().union(*(metric_names_in(e) for e in rule_exprs + panel_exprs))
    assert used == exported, f"exported but neither alerted on nor shown: {exported - used}"


def test_the_dashboard_asks_for_its_data_source_and_its_panels_do_not_collide() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dagd-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
