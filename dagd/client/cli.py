"""``dagctl``: the command line of dagd.

Every command but ``dev``, ``daemon run`` and ``instance migrate`` talks to the running supervisor
over gRPC; it finds it through ``$DAGD_HOME/supervisor.json`` unless ``--address`` is given.
Listing commands take ``--json`` (one document on stdout; logs go to stderr).

Exit codes (docs/cli.md): 0 ok, 1 failed, 2 bad input, 3 a daemon is unhealthy,
4 no supervisor reachable, 5 not found, 6 the run awaited by ``submit --wait`` was canceled.

Start-up time matters (a liveness probe or a shell loop pays it on every call): modules that only
some commands need (the gRPC client, the instance, the supervisor) are imported inside them, and
tables are plain text (:mod:`dagd.client.table`). ``scripts/bench/bench_cli.py`` measures it.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from dagd import home as layout
from dagd.client.table import Cell, Column, print_table, styled
from dagd.errors import ConfigError, DagdError, DefinitionError, InvalidArgument, NotFound, SchemaOutOfDate
from dagd.strictjson import loads_object

if TYPE_CHECKING:
    from dagd.client.client import Client

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNHEALTHY, EXIT_UNREACHABLE, EXIT_NOT_FOUND = 1, 2, 3, 4, 5
EXIT_CANCELED = 6  # submit --wait: the run ended CANCELED
F = TypeVar("F", bound=Callable[..., Any])
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def field(label: str, value: object, style: str = "") -> None:
    """One ``label  value`` line of a ``show``/``info`` page."""
    click.echo(f"{styled(f'{label:<16}', 'bold')} {styled(str(value), style)}")


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"dagctl: error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


def exit_code_for(exc: DagdError) -> int:
    from dagd.client.client import SupervisorUnreachable

    if isinstance(exc, SupervisorUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, (InvalidArgument, ConfigError, DefinitionError)):
        return EXIT_BAD_INPUT
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    return EXIT_FAILED


class Ctx:
    def __init__(
        self, home: str | None, address: str | None, token: str | None, tls_ca: str | None = None
    ) -> None:
        from dagd.instance.instance import resolve_home

        self.home = resolve_home(home)
        self.address = address
        self.token = token
        self.tls_ca = tls_ca

    def client(self) -> Client:
        from dagd.client.client import Client

        global _client_opened
        _client_opened = True
        metadata = [("x-dagd-client", "dagctl"), ("x-dagd-user", _login())]
        return Client.for_home(
            self.home, address=self.address, token=self.token, tls_ca_file=self.tls_ca, metadata=metadata
        )


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DagdError as exc:
            fail(str(exc), exit_code_for(exc))

    return wrapper  # type: ignore[return-value]


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def parse_tags(values: Sequence[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--tag {item!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="DAGD_HOME", help="Instance directory (default $DAGD_HOME, else ~/.dagd).")
@click.option("--address", envvar="DAGD_ADDRESS", help="Supervisor address (unix:PATH or HOST:PORT).")
@click.option("--token", envvar="DAGD_TOKEN", help="Bearer token for a TCP address.")
@click.option(
    "--tls-ca",
    envvar="DAGD_TLS_CA",
    help="CA certificate (PEM) to trust for a TCP address served with TLS (grpc.tls).",
)
@click.version_option(package_name="dagd")
@click.pass_context
def cli(
    ctx: click.Context, home: str | None, address: str | None, token: str | None, tls_ca: str | None
) -> None:
    """dagd: daemon supervisor and run orchestrator."""
    ctx.obj = Ctx(home, address, token, tls_ca)


# -- code location options -------------------------------------------------------------------------


def code_options(fn: F) -> F:
    fn = click.option("-m", "--module", "module", help="Python module with a Definitions object.")(fn)
    fn = click.option(
        "-f", "--python-file", "python_file", type=click.Path(), help="Python file with a Definitions object."
    )(fn)
    fn = click.option("-w", "--workspace", "workspace", type=click.Path(), help="workspace.yaml to load.")(fn)
    return fn


def resolve_targets(workspace: str | None, python_file: str | None, module: str | None) -> list[Any]:
    from dagd.workspace import target_from_file, target_from_module, targets_from_workspace_file

    given = [x for x in (workspace, python_file, module) if x]
    if len(given) > 1:
        raise InvalidArgument("give only one of -w, -f and -m")
    if workspace:
        return targets_from_workspace_file(workspace)
    if python_file:
        return [target_from_file(python_file)]
    if module:
        return [target_from_module(module)]
    if pathlib.Path("workspace.yaml").is_file():
        return targets_from_workspace_file("workspace.yaml")
    raise InvalidArgument(
        "no code to load: pass -w workspace.yaml, -f defs.py or -m module (or run where workspace.yaml is)"
    )


def private_home(home: pathlib.Path) -> None:
    """Make what this process and its children write owner-only; warn about a looser home.

    ``umask 077`` before anything is created covers every file and folder dagd writes under
    ``$DAGD_HOME`` (database, logs, run logs, code copies, published addresses), in this process
    and the processes it starts, which inherit it. A home dagd creates is 0700. An existing home
    readable or writable by others is left as it is (it is the owner's choice), with a warning.
    """
    import logging
    import stat

    os.umask(0o077)
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
    except FileNotFoundError:
        home.mkdir(mode=0o700, parents=True)
        return
    if mode & 0o077:
        logging.getLogger("dagd").warning(
            "DAGD_HOME %s is accessible to other users (mode %o): its database and logs may hold "
            "secrets; `chmod 700 %s` makes it private",
            home, mode, home,
        )  # fmt: skip


def _serve(
    ctx: Ctx,
    workspace: str | None,
    python_file: str | None,
    module: str | None,
    *,
    web: bool = False,
    web_port: int | None = None,
    stop_runs: bool = False,
    standby: bool = False,
) -> None:
    from dagd.supervisor.pid1 import become_init_if_pid1

    become_init_if_pid1()  # in a container: PID 1 stays a tiny init that reaps orphans

    from dagd.instance.instance import Instance
    from dagd.supervisor.app import configure_logging, run_supervisor
    from dagd.supervisor.sdnotify import Notifier
    from dagd.webserver.child import WebserverChild

    # Read (and removed from the environment, so children do not inherit it) before any child starts.
    notifier = Notifier.from_environment()
    configure_logging()
    targets = resolve_targets(workspace, python_file, module)  # bad -f/-m/-w: refused, nothing created
    if workspace is None and python_file is None and module is None:
        workspace = "workspace.yaml"  # resolve_targets found it in the current directory
    os.umask(0o077)  # before anything is created (see private_home)
    instance = Instance.load(ctx.home)
    # The web UI is its own process, started once the supervisor serves (it talks to it over gRPC).
    webserver = WebserverChild(instance.home, port=web_port) if web else None

    def started() -> None:
        # Said once this supervisor really serves: a second one refused at start warns of nothing.
        private_home(ctx.home)
        if webserver is not None:
            webserver.start()

    try:
        code = run_supervisor(
            instance,
            targets,
            workspace_file=workspace,
            standby=standby,
            cancel_runs_on_exit=stop_runs,
            on_started=started,
            notifier=notifier,
        )
    finally:
        if webserver is not None:
            webserver.stop()
    sys.exit(code)


@cli.command()
@code_options
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Web UI port (default webserver.port, 3000; 0 = any free port, see $DAGD_HOME/webserver.json).",
)
@click.option("--no-web", is_flag=True, help="Do not start the web UI.")
@click.pass_obj
@handle_errors
def dev(
    ctx: Ctx,
    workspace: str | None,
    python_file: str | None,
    module: str | None,
    web_port: int | None,
    no_web: bool,
) -> None:
    """Supervisor, daemons and the web UI in the foreground; Ctrl-C stops everything."""
    if no_web and web_port is not None:
        raise InvalidArgument("give --web-port or --no-web, not both")
    _serve(ctx, workspace, python_file, module, web=not no_web, web_port=web_port, stop_runs=True)


@cli.group()
def daemon() -> None:
    """The supervisor and its daemons."""


@daemon.command("run")
@code_options
@click.option(
    "--standby", is_flag=True, help="If another supervisor drives this storage, wait and take over."
)
@click.pass_obj
@handle_errors
def daemon_run(
    ctx: Ctx, workspace: str | None, python_file: str | None, module: str | None, standby: bool
) -> None:
    """Run the supervisor and its daemons in the foreground."""
    _serve(ctx, workspace, python_file, module, standby=standby)


@cli.command()
@click.option("--host", default=None, help="Listen address (default webserver.host, 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port (default webserver.port, 3000; 0 = any).",
)
@click.pass_obj
@handle_errors
def webserver(ctx: Ctx, host: str | None, port: int | None) -> None:
    """The web UI alone, in the foreground; it talks to the running supervisor over gRPC."""
    from dagd.supervisor.pid1 import become_init_if_pid1

    become_init_if_pid1()
    from dagd.webserver.server import configure_logging, load_settings, serve

    configure_logging()
    os.umask(0o077)  # see private_home
    settings = load_settings(ctx.home, host=host, port=port, grpc_address=ctx.address, grpc_token=ctx.token)
    private_home(ctx.home)
    sys.exit(serve(settings))


@cli.command()
@click.option(
    "--service",
    default="",
    help='gRPC health service: "" (default) the process and its main loop; dagd.api.v1.RunService: leading.',
)
@click.option(
    "--local",
    is_flag=True,
    help="Probe what runs in this home (its supervisor's socket, else its web UI), ignoring --address.",
)
@click.option("--timeout", type=click.FloatRange(0.1, 300), default=5.0, show_default=True)
@click.pass_obj
@handle_errors
def health(ctx: Ctx, service: str, local: bool, timeout: float) -> None:
    """Probe a dagd process's health, never the database: exit 0 SERVING, 1 not, 4 no answer.

    The supervisor's gRPC health at --address, else at this home's Unix socket (leading or not).
    With --local (a container's HEALTHCHECK), the process in this home: the supervisor if its
    socket exists, else the web UI's /healthz (the URL in $DAGD_HOME/webserver.json).
    """
    from dagd.instance.instance import Instance

    if ctx.address and not local:
        _grpc_health(ctx.address, service, timeout, ctx.tls_ca)
        return
    socket_path = Instance.load(ctx.home, create=False).socket_path
    web = layout.webserver_file(ctx.home)
    if local and not socket_path.exists() and web.exists():
        _web_health(web, timeout)
        return
    _grpc_health(f"unix:{socket_path}", service, timeout, None)


def _grpc_health(address: str, service: str, timeout: float, tls_ca: str | None) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if tls_ca and not address.startswith("unix:"):
        try:
            ca = pathlib.Path(tls_ca).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"cannot read the TLS CA file {tls_ca}: {exc.strerror or exc}") from None
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.NOT_FOUND:
                fail(f"{address}: no health status for service {service!r}", EXIT_NOT_FOUND)
            fail(f"{address}: no answer: {code.name if code else exc}", EXIT_UNREACHABLE)
    click.echo(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        sys.exit(EXIT_FAILED)


def _web_health(published: pathlib.Path, timeout: float) -> None:
    import urllib.error
    import urllib.request

    try:
        url = str(json.loads(published.read_text())["url"]).rstrip("/") + "/healthz"
    except (OSError, ValueError, KeyError, TypeError):
        fail(f"{published}: unreadable", EXIT_UNREACHABLE)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL
            ok = response.status == 200
    except (OSError, urllib.error.URLError) as exc:
        fail(f"{url}: no answer: {exc}", EXIT_UNREACHABLE)
    click.echo("SERVING" if ok else "NOT_SERVING")
    if not ok:
        sys.exit(EXIT_FAILED)


# -- runs ---------------------------------------------------------------------------------------


@cli.command()
@click.argument("job")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--priority", type=int, default=None, help="Overrides the dagd/priority tag.")
@click.option("--config", "config_json", default=None, help="Run config as a JSON object.")
@click.option("--idempotency-key", default="", help="Retries with the same key return the same run.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the run to end: exit 0 SUCCESS, 1 FAILURE, 6 CANCELED (the run id is printed first).",
)
@click.option(
    "--from-file",
    "from_file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Submit many runs at once, all or none: one JSON object a line (tags, config, priority, "
    "idempotency_key), - for stdin. --tag/--priority/--config apply to every line.",
)
@click.pass_obj
@handle_errors
def submit(
    ctx: Ctx,
    job: str,
    tags: tuple[str, ...],
    priority: int | None,
    config_json: str | None,
    idempotency_key: str,
    as_json: bool,
    wait: bool,
    from_file: Any,
) -> None:
    """Submit a run of JOB; prints the run id (with --from-file, one id a line)."""
    parsed_tags = parse_tags(tags)
    if config_json is not None:
        loads_object(config_json, "--config")  # refused here, naming the option, before any call
    if from_file is not None:
        from dagd.client.batch import submit_from_file

        result = submit_from_file(
            ctx, job, from_file, parsed_tags, priority, config_json, idempotency_key, wait, as_json
        )
        emit_json(result) if as_json else click.echo("\n".join(result))
        return
    with ctx.client() as client:
        run: dict[str, Any] = client.submit(
            job,
            tags=parsed_tags,
            run_config_json=config_json,
            priority=priority,
            idempotency_key=idempotency_key,
        )
        if not wait:
            emit_json(run) if as_json else click.echo(run["run_id"])
            return
        if not as_json:
            click.echo(run["run_id"])
            sys.stdout.flush()  # a script reading the id sees it before the run ends
        run = wait_for_end(client, run)
    if as_json:
        emit_json(run)
    else:
        # On stderr: stdout holds only the run id, for `id=$(dagctl submit JOB --wait)`.
        error = f": {run['error']}" if run["error"] else ""
        click.echo(f"run {run['run_id']} ended {run['status']}{error}", err=True)
    sys.exit({"SUCCESS": 0, "CANCELED": EXIT_CANCELED}.get(run["status"], EXIT_FAILED))


def wait_for_end(client: Client, run: dict[str, Any]) -> dict[str, Any]:
    """Wait on the run's status stream until it has finished; the finished run.

    The stream resumes from its cursor after a disconnect, for as long as it takes the supervisor
    to answer again, so a ``--wait`` outlives a supervisor restart and misses no change.
    """
    from dagd.client.streams import wait_for_run

    if run["status"] in FINISHED:
        return run
    return wait_for_run(client, run["run_id"], give_up_after=float("inf"))


@cli.group()
def runs() -> None:
    """Inspect and control runs."""


STATUS_STYLE = {
    "SUCCESS": "green",
    "FAILURE": "red",
    "CANCELED": "yellow",
    "STARTED": "cyan",
    "QUEUED": "magenta",
}


@runs.command("list")
@click.option("--status", "statuses", multiple=True, help="Filter by status, repeatable.")
@click.option("--job", "job_name", default="", help="Filter by job name.")
@click.option("--tag", "tags", multiple=True, help="Filter by KEY=VALUE, repeatable.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def runs_list(
    ctx: Ctx, statuses: tuple[str, ...], job_name: str, tags: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """Runs, newest first."""
    with ctx.client() as client:
        items, _ = client.list_runs(statuses=statuses, job_name=job_name, tags=parse_tags(tags), limit=limit)
    if as_json:
        emit_json(items)
        return
    columns = [
        Column("RUN ID", whole=True), Column("JOB", whole=True), Column("STATUS"),
        Column("PRIORITY", drop=2), Column("CREATED", drop=1), Column("ENDED", drop=3),
    ]  # fmt: skip
    rows = [
        [
            run["run_id"],
            run["job_name"],
            Cell(run["status"], STATUS_STYLE.get(run["status"], "")),
            str(run["priority"]),
            run["created_at"] or "-",
            run["ended_at"] or "-",
        ]  # fmt: skip
        for run in items
    ]
    print_table(columns, rows)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def runs_show(ctx: Ctx, run_id: str, as_json: bool) -> None:
    """A run, with its timeline of events."""
    with ctx.client() as client:
        run, events = client.get_run(client.resolve_run_id(run_id))
    if as_json:
        emit_json({**run, "events": events})
        return
    for key in (
        "run_id",
        "job_name",
        "status",
        "priority",
        "created_at",
        "started_at",
        "ended_at",
        "attempt",
        "host",
        "worker_pid",
    ):
        field(key, run[key] if run[key] is not None else "-")
    field("tags", " ".join(f"{k}={v}" for k, v in run["tags"].items()) or "-")
    if run["error"]:
        field("error", run["error"], "red")
    if run.get("attempts"):
        click.echo(styled("attempts", "bold"))
        for a in run["attempts"]:
            where = f"{a['host']} pid {a['pid']}" if a["host"] else "not claimed"
            reason = f"  {a['end_reason']}" if a["end_reason"] else ""
            click.echo(
                f"  {a['attempt']:>3}  {a['state']:<10} {where}  dispatched {a['dispatched_at']}{reason}"
            )
    click.echo(styled("timeline", "bold"))
    for event in events:
        click.echo(f"  {event['at']}  {event['status'] or event['kind']:<10} {event['message']}")


@runs.command("logs")
@click.argument("run_id")
@click.option("--follow", "-F", is_flag=True, help="Keep printing until the run finishes.")
@click.pass_obj
@handle_errors
def runs_logs(ctx: Ctx, run_id: str, follow: bool) -> None:
    """The run's log lines (context.log, stdout and stderr)."""
    from dagd.client.streams import follow_logs

    def show(lines: Sequence[Mapping[str, Any]]) -> None:
        for line in lines:
            click.echo(f"{line['at']} {line['stream']:<6} {line['level']:<7} {line['message']}")

    after = 0
    with ctx.client() as client:
        run_id = client.resolve_run_id(run_id)
        if not follow:
            while True:
                lines, after, _ = client.read_logs(run_id, after_seq=after)
                show(lines)
                if not lines:
                    return
        try:
            for followed, _ in follow_logs(client, run_id):
                show(followed)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.exit(130)


@runs.command("watch")
@click.option("--job", "job_name", default="", help="Only runs of this job.")
@click.option("--status", "statuses", multiple=True, help="Only changes to this status, repeatable.")
@click.option("--tag", "tags", multiple=True, help="Only runs with KEY=VALUE, repeatable.")
@click.option("--cursor", default="", help="Resume after the change that carried this cursor (--json).")
@click.option("--from-beginning", is_flag=True, help="Start from the oldest change stored, not from now.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with its cursor.")
@click.pass_obj
@handle_errors
def runs_watch(
    ctx: Ctx,
    job_name: str,
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    cursor: str,
    from_beginning: bool,
    as_json: bool,
) -> None:
    """One line per run status change, as it happens, until interrupted (Ctrl-C: exit 130).

    Reconnects by itself (for a minute) after the supervisor restarts, missing nothing.
    """
    from dagd.client.streams import watch_runs

    parsed = parse_tags(tags)
    with ctx.client() as client:
        try:
            for change in watch_runs(
                client, cursor=cursor, job_name=job_name, statuses=statuses, tags=parsed,
                from_beginning=from_beginning,
            ):  # fmt: skip
                if as_json:
                    click.echo(json.dumps(change))
                else:
                    status = styled(f"{change['status']:<11}", STATUS_STYLE.get(change["status"], ""))
                    message = f"  {change['message']}" if change["message"] else ""
                    click.echo(
                        f"{change['at']}  {change['run_id']}  {change['job_name'] or '-'}  {status}{message}"
                    )
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.exit(130)


@runs.command("terminate")
@click.argument("run_id", required=False)
@click.option("--status", "statuses", multiple=True, help="Bulk: every run with this status (repeatable).")
@click.option("--job", "job_name", default="", help="Bulk: only runs of this job.")
@click.option("--tag", "tags", multiple=True, help="Bulk: only runs with KEY=VALUE (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def runs_terminate(
    ctx: Ctx,
    run_id: str | None,
    statuses: tuple[str, ...],
    job_name: str,
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Cancel a run (queued at once, running via SIGTERM to its process group), or many with --status.

    Bulk: `dagctl runs terminate --status QUEUED [--tag K=V] [--job J]` cancels every matching
    queued run in one transaction.
    """
    bulk = bool(statuses or job_name or tags)
    if run_id and bulk:
        raise InvalidArgument("give a RUN_ID or --status/--job/--tag filters, not both")
    if not run_id and not statuses:
        raise InvalidArgument("give a RUN_ID, or --status (with optional --job/--tag) to terminate many runs")
    with ctx.client() as client:
        if not run_id:
            canceled, canceling = client.terminate_runs(
                statuses=statuses, job_name=job_name, tags=parse_tags(tags)
            )
            if as_json:
                emit_json({"canceled": canceled, "canceling": canceling})
            else:
                click.echo(f"canceled {len(canceled)} run(s); {len(canceling)} running run(s) asked to stop")
            return
        run_id = client.resolve_run_id(run_id)
        run, changed = client.terminate(run_id)
    if as_json:
        emit_json({**run, "changed": changed})
    elif changed:
        click.echo(f"{run_id}: {run['status']}")
    else:
        click.echo(f"{run_id}: already {run['status']}, nothing to do")


@runs.command("why")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def runs_why(ctx: Ctx, run_id: str, as_json: bool) -> None:
    """Why a run is still queued: the limits holding it, the runs holding them, its place in line."""
    with ctx.client() as client:
        run_id = client.resolve_run_id(run_id)
        why = client.explain_run(run_id)
    if as_json:
        emit_json(why)
        return
    click.echo(f"{run_id} is {why['status']}: {why['summary']}")
    for reason in why["reasons"]:
        click.echo(f"  held by {reason}")
    if why["holders"]:
        shown = ", ".join(why["holders"][:10])
        more = f" and {len(why['holders']) - 10} more" if len(why["holders"]) > 10 else ""
        click.echo(f"  runs holding it: {shown}{more}")


@cli.group()
def queue() -> None:
    """The run queue: pause, resume, and what it holds."""


def _print_queue(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(status)
        return
    cap = "no limit" if status["max_concurrent_runs"] == -1 else str(status["max_concurrent_runs"])
    state = "PAUSED" if status["paused"] else "running"
    health = "" if status["queue_daemon_healthy"] else " (run_queue daemon NOT healthy)"
    click.echo(
        f"queue {state}{health}: {status['queued']} queued, {status['in_progress']} in progress of {cap}"
    )
    for usage in status["tag_limits"]:
        click.echo(f"  {usage['limit']}: {usage['in_use']} of {usage['capacity']}")


@queue.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def queue_status(ctx: Ctx, as_json: bool) -> None:
    """Queued and in-progress counts, limits and their use, paused or not."""
    with ctx.client() as client:
        _print_queue(client.queue_status(), as_json)


@queue.command("pause")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def queue_pause(ctx: Ctx, as_json: bool) -> None:
    """Stop launching queued runs (persisted; runs in progress continue)."""
    with ctx.client() as client:
        _print_queue(client.set_queue_paused(True), as_json)


@queue.command("resume")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def queue_resume(ctx: Ctx, as_json: bool) -> None:
    """Launch queued runs again."""
    with ctx.client() as client:
        _print_queue(client.set_queue_paused(False), as_json)


# -- daemons ------------------------------------------------------------------------------------


@cli.group()
def daemons() -> None:
    """Daemon health and control."""


@daemons.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def daemons_status(ctx: Ctx, as_json: bool) -> None:
    """Each daemon's health; exit 3 if any is unhealthy, 4 if no supervisor answers."""
    with ctx.client() as client:
        client.timeout = 5.0
        status = client.daemon_status()
    items = status["daemons"]
    if as_json:
        emit_json(status)
    else:
        columns = [
            Column("DAEMON", whole=True), Column("HEALTHY"), Column("STATE"), Column("PID", whole=True),
            Column("RESTARTS", drop=2), Column("LAST HEARTBEAT", drop=1), Column("DETAIL"),
        ]  # fmt: skip
        rows = [
            [
                d["name"],
                Cell("yes", "green") if d["healthy"] else Cell("no", "red"),
                d["state"],
                str(d["pid"] or "-"),
                str(d["restarts"]),
                _heartbeat_cell(d),
                d["detail"],
            ]  # fmt: skip
            for d in items
        ]
        if status.get("role"):
            click.echo(f"this supervisor: {status['role']}")
        print_table(columns, rows)
    if not all(d["healthy"] for d in items):
        sys.exit(EXIT_UNHEALTHY)


def _heartbeat_cell(d: dict[str, Any]) -> str:
    if not d["last_heartbeat_at"]:
        return "-"
    age = d.get("heartbeat_age_seconds")
    return d["last_heartbeat_at"] if age is None else f"{d['last_heartbeat_at']} ({age:.1f}s ago)"


@daemons.command("restart")
@click.argument("name")
@click.pass_obj
@handle_errors
def daemons_restart(ctx: Ctx, name: str) -> None:
    """Restart one daemon (does not count against its restart budget)."""
    with ctx.client() as client:
        d = client.restart_daemon(name)
    click.echo(f"{name}: {d['detail']}")


@daemons.command("logs")
@click.argument("name")
@click.option("--follow", "-F", is_flag=True)
@click.option("--lines", "-n", type=int, default=50)
@click.pass_obj
@handle_errors
def daemons_logs(ctx: Ctx, name: str, follow: bool, lines: int) -> None:
    """A daemon's log file (read from $DAGD_HOME/logs on this host)."""
    from dagd.daemons import DAEMON_NAMES

    if name not in DAEMON_NAMES:
        raise NotFound(f"no daemon named {name!r} (daemons: {', '.join(DAEMON_NAMES)})")
    path = layout.log_file(ctx.home, name)
    if not path.exists():
        raise NotFound(f"no log yet for {name} at {path}")
    with open(path, errors="replace") as handle:
        for line in handle.readlines()[-lines:]:
            click.echo(line, nl=False)
        while follow:
            line = handle.readline()
            if line:
                click.echo(line, nl=False)
            else:
                time.sleep(0.2)


# -- deleting runs (retention: docs/retention.md) --------------------------------------------------


@runs.command("delete")
@click.argument("run_ids", nargs=-1, required=True)
@click.pass_obj
@handle_errors
def runs_delete(ctx: Ctx, run_ids: tuple[str, ...]) -> None:
    """Delete finished runs with their events and logs (all or none: never a run in progress)."""
    with ctx.client() as client:
        deleted = client.delete_runs([client.resolve_run_id(run_id) for run_id in run_ids])
    click.echo(f"deleted {len(deleted)} run(s)")


@runs.command("purge")
@click.option("--older-than", "days", type=float, required=True, help="Days since the run ended.")
@click.option("--status", "statuses", multiple=True, help="SUCCESS, FAILURE or CANCELED (repeatable).")
@click.pass_obj
@handle_errors
def runs_purge(ctx: Ctx, days: float, statuses: tuple[str, ...]) -> None:
    """Delete finished runs that ended more than DAYS ago, with their events and logs."""
    with ctx.client() as client:
        deleted = sum(client.purge_runs(days, statuses))
    click.echo(f"purged {deleted} run(s) that ended more than {days:g} day(s) ago")


# -- worker hosts (the Celery launcher, docs/cluster.md) ------------------------------------------


@cli.group()
def worker() -> None:
    """A worker host of the Celery run launcher."""


@worker.command("run")
@code_options
@click.option(
    "--queue",
    "-Q",
    "queues",
    multiple=True,
    help="Queue to consume (repeatable; default the configured one).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 1024),
    default=4,
    show_default=True,
    help="Slots: runs at once.",
)
@click.option("--no-fork-server", is_flag=True, help="Spawn each run's watcher instead of forking it.")
@click.option(
    "--stall-seconds",
    type=click.FloatRange(1, 3600),
    default=10.0,
    show_default=True,
    help="Restart the consumer if messages wait, a slot is free and nothing arrives this long.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus /metrics of this host on this port (0: any free port).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@click.pass_obj
@handle_errors
def worker_run(
    ctx: Ctx, workspace: str | None, python_file: str | None, module: str | None, queues: tuple[str, ...],
    concurrency: int, no_fork_server: bool, stall_seconds: float, metrics_port: int | None, metrics_host: str,
) -> None:  # fmt: skip
    """Take runs from the broker and run each in its own process group, in the foreground."""
    from dagd.supervisor.pid1 import become_init_if_pid1

    become_init_if_pid1()  # in a container: PID 1 stays a tiny init that reaps orphans
    import logging

    from dagd.instance.config import check_queue_name
    from dagd.instance.instance import Instance
    from dagd.runs.celery.host import run_host
    from dagd.supervisor.sdnotify import Notifier

    # Read (and removed from the environment, so watchers and runs do not inherit it) first.
    notifier = Notifier.from_environment()
    for queue in queues:
        try:
            check_queue_name(queue)
        except ValueError as exc:
            raise InvalidArgument(f"--queue: {exc}") from None
    if workspace or python_file or module:
        from dagd.workspace import load_target

        for target in resolve_targets(workspace, python_file, module):
            load_target(target)  # fail now, not at the first run, if this host cannot load the code
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(
        run_host(
            Instance.load(ctx.home, create=False),
            queues,
            concurrency,
            not no_fork_server,
            notifier,
            stall_seconds,
            None if metrics_port is None else (metrics_host, metrics_port),
        )
    )


@cli.group()
def workers() -> None:
    """The fleet's worker hosts."""


@workers.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def workers_status(ctx: Ctx, as_json: bool) -> None:
    """Each worker host; exit 3 if any is unhealthy, 4 if no supervisor answers."""
    with ctx.client() as client:  # from the supervisor, over its API (no database access here)
        client.timeout = 5.0
        items = client.list_workers()
    if as_json:
        emit_json({"workers": items})
    else:
        columns = [
            Column("NAME", whole=True), Column("HOST", whole=True), Column("QUEUES"), Column("SLOTS"),
            Column("IN USE"), Column("LAST HEARTBEAT", drop=1), Column("HEALTHY"),
        ]  # fmt: skip
        rows = [
            [
                w["name"],
                w["host"],
                ",".join(w["queues"]),
                str(w["slots"]),
                str(w["in_use"]),
                w["last_heartbeat_at"] or "-",
                Cell("yes", "green") if w["healthy"] else Cell("no", "red"),
            ]  # fmt: skip
            for w in items
        ]
        print_table(columns, rows)
    if not all(w["healthy"] for w in items):
        sys.exit(EXIT_UNHEALTHY)


# -- instance -----------------------------------------------------------------------------------


@cli.group()
def instance() -> None:
    """The instance: configuration and storage."""


@instance.command("info")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def instance_info(ctx: Ctx, as_json: bool) -> None:
    """What the running supervisor is configured with."""
    with ctx.client() as client:
        info = client.instance_info()
    if as_json:
        emit_json(info)
        return
    for key in ("version", "home", "storage", "run_coordinator", "run_launcher", "supervisor_pid"):
        field(key, info[key])
    field("addresses", ", ".join(info["addresses"]))
    _print_role(info)
    for loc in info["code_locations"]:
        status, style = location_status(loc)
        field("code location", f"{loc['name']} ({status})", style)
        click.echo(f"{'':<17}jobs: {', '.join(loc['jobs']) or '-'}")
        click.echo(f"{'':<17}schedules: {', '.join(loc['schedules']) or '-'}")
        click.echo(f"{'':<17}sensors: {', '.join(loc['sensors']) or '-'}")
        if loc["load_error"]:
            kept = "last good definitions kept" if loc["server"]["generation"] else "nothing loaded"
            click.echo(f"{'':<17}" + styled(f"load error ({kept}): {loc['load_error']}", "red"))
        for error in loc["definition_errors"]:
            click.echo(f"{'':<17}{styled(error, 'red')}")


def location_status(loc: dict[str, Any]) -> tuple[str, str]:
    """What ``instance info`` says of a code location, and its colour: never "ok" unless it loaded."""
    server = loc["server"]
    if not server["generation"]:
        # Generation 0: no load ever succeeded, so there are no definitions to keep using.
        return "NOT LOADED", "red"
    if not server["healthy"]:
        return f"server {server['state'] or 'down'}, generation {server['generation']}", "red"
    if loc["load_error"]:
        return f"load failed, generation {server['generation']} in use", "yellow"
    return f"ok, generation {server['generation']}", ""


def _print_role(info: dict[str, Any]) -> None:
    """Role, lease (by the database's clock) and this host's clock skew (docs/high-availability.md)."""
    lease, skew = info.get("lease"), info.get("clock_skew_seconds")
    field("role", info.get("role") or "-")
    if lease:
        left = lease["expires_in_seconds"]
        state = f"expires in {left:.1f}s" if left >= 0 else f"expired {-left:.1f}s ago"
        field("lease", f"{lease['holder']} (epoch {lease['epoch']}, {state})")
    if skew is not None:
        line = f"{skew:+.3f}s (database minus this supervisor's host)"
        if abs(skew) > 1.0:
            field("clock skew", f"{line}: fix time sync", "yellow")
        else:
            field("clock skew", line)


@instance.command("migrate")
@click.pass_obj
@handle_errors
def instance_migrate(ctx: Ctx) -> None:
    """Upgrade the instance database to this dagd's schema."""
    from dagd.instance.instance import Instance
    from dagd.storage.engine import make_engine
    from dagd.storage.migrate import upgrade

    os.umask(0o077)  # it may create the SQLite database: owner-only, like everything under DAGD_HOME
    inst = Instance.load(ctx.home)
    engine = make_engine(inst.storage_url)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})"))


# -- schedules and sensors --------------------------------------------------------------------


def _print_instigators(items: list[dict[str, Any]], kind: str) -> None:
    if kind == "schedule":
        columns = [
            Column("SCHEDULE", whole=True), Column("STATUS"), Column("CRON", whole=True),
            Column("TIMEZONE", drop=2), Column("JOB", whole=True), Column("NEXT TICK", drop=1),
            Column("LAST TICK", drop=3),
        ]  # fmt: skip
    else:
        columns = [
            Column("SENSOR", whole=True), Column("STATUS"), Column("INTERVAL", drop=2),
            Column("JOB", whole=True), Column("CURSOR", drop=1), Column("LAST TICK", drop=3),
        ]  # fmt: skip
    rows = []
    for item in items:
        last = item["last_tick"]
        last_text = f"{last['status']} {last['started_at']}" if last else "-"
        error = item["definition_error"]
        status = Cell(f"BROKEN: {error}", "red") if error else Cell(item["status"])
        if kind == "schedule":
            rows.append([
                item["name"], status, item["cron_schedule"], item["execution_timezone"], item["job_name"] or "-",
                item["next_tick_at"] or "-", last_text,
            ])  # fmt: skip
        else:
            rows.append([
                item["name"], status, f"{item['minimum_interval_seconds']:g}s", item["job_name"] or "-",
                item["cursor"] if item["cursor"] is not None else "-", last_text,
            ])  # fmt: skip
    print_table(columns, rows)


def _print_ticks(ticks: list[dict[str, Any]]) -> None:
    columns = [
        Column("TICK", whole=True), Column("STATUS"), Column("FOR", drop=2), Column("STARTED", drop=1),
        Column("RUNS"), Column("REASON / ERROR"),
    ]  # fmt: skip
    rows = [
        [
            str(t["id"]),
            t["status"],
            t["scheduled_time"] or "-",
            t["started_at"] or "-",
            " ".join(t["run_ids"]) or "-",
            t["error"] or t["skip_reason"] or "",
        ]  # fmt: skip
        for t in ticks
    ]
    print_table(columns, rows)


def _instigator_group(kind: str) -> click.Group:
    plural = f"{kind}s"

    @click.group(name=plural, help=f"List, start and stop {plural}; see their ticks.")
    def group() -> None:
        pass

    @group.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    @handle_errors
    def list_cmd(ctx: Ctx, as_json: bool) -> None:
        with ctx.client() as client:
            items = client.list_instigators(kind)
        if as_json:
            emit_json({plural: items})
        else:
            _print_instigators(items, kind)

    def set_running(running: bool) -> Callable[..., None]:
        @click.argument("name")
        @click.option("--json", "as_json", is_flag=True)
        @click.pass_obj
        @handle_errors
        def command(ctx: Ctx, name: str, as_json: bool) -> None:
            with ctx.client() as client:
                item = client.set_instigator_running(kind, name, running)
            if as_json:
                emit_json(item)
            else:
                click.echo(f"{kind} {name}: {item['status']}")

        return command

    start_help = {
        "schedule": "Start a schedule (persisted; it never fires for times before it was started).",
        "sensor": "Start a sensor (persisted; it is evaluated from its stored cursor).",
    }[kind]
    group.command("start", help=start_help)(set_running(True))
    group.command("stop", help=f"Stop a {kind} (persisted).")(set_running(False))

    @group.command("ticks")
    @click.argument("name")
    @click.option("--limit", type=click.IntRange(1, 1000), default=20)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    @handle_errors
    def ticks_cmd(ctx: Ctx, name: str, limit: int, as_json: bool) -> None:
        """Recent ticks, newest first."""
        with ctx.client() as client:
            ticks = client.list_ticks(kind, name, limit)
        if as_json:
            emit_json({"ticks": ticks})
        else:
            _print_ticks(ticks)

    return group


schedules = _instigator_group("schedule")
sensors = _instigator_group("sensor")
cli.add_command(schedules)
cli.add_command(sensors)


@schedules.command("preview")
@click.argument("name")
@click.option("--count", type=click.IntRange(1, 1000), default=5)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def schedules_preview(ctx: Ctx, name: str, count: int, as_json: bool) -> None:
    """The next due times, in the schedule's timezone (with its UTC offset); --json adds UTC."""
    with ctx.client() as client:
        preview = client.preview_schedule(name, count)
    if as_json:
        emit_json(preview)
        return
    # Once each: the offset already says what the time is in UTC (with UTC both were the same).
    for local in preview["ticks_local"]:
        click.echo(local)


@sensors.command("cursor")
@click.argument("name")
@click.option("--set", "new_cursor", default=None, help="Replace the cursor with this value.")
@click.option("--clear", is_flag=True, help="Remove the cursor.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def sensors_cursor(ctx: Ctx, name: str, new_cursor: str | None, clear: bool, as_json: bool) -> None:
    """Show a sensor's cursor, or set (--set) or clear (--clear) it."""
    if new_cursor is not None and clear:
        raise InvalidArgument("give --set or --clear, not both")
    with ctx.client() as client:
        if new_cursor is not None or clear:
            item = client.set_sensor_cursor(name, None if clear else new_cursor)
        else:
            found = [i for i in client.list_instigators("sensor") if i["name"] == name]
            if not found:
                raise NotFound(f"no sensor named {name!r}")
            item = found[0]
    if as_json:
        emit_json({"name": name, "cursor": item["cursor"]})
    else:
        click.echo(item["cursor"] if item["cursor"] is not None else "(no cursor)")


# Set when a command opened a client: it only talked to the supervisor, so it may end without
# interpreter finalization (see _quick_exit). Serving commands never set it.
_client_opened = False


def _quick_exit(code: int) -> NoReturn:
    """Flush and leave at once: finalizing the interpreter (gRPC's threads, every module) took
    about 30 ms of a 150 ms `dagctl runs list`, for nothing a client command needs."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said anyway
            pass
    os._exit(code)


def entry() -> None:
    """The ``dagctl`` console script (and ``python -m dagd.client.cli``): :func:`main`, then a quick
    exit after client commands. In-process callers (tests) use :func:`main`, which returns or
    raises SystemExit as usual."""
    try:
        main()
    except SystemExit as exc:
        if not _client_opened:
            raise
        code = exc.code
        if code is not None and not isinstance(code, int):
            click.echo(code, err=True)
            code = 1
        _quick_exit(code or 0)
    if _client_opened:
        _quick_exit(0)


def main() -> None:
    for index, arg in enumerate(sys.argv[1:], start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes, kept by Python as lone surrogates
            fail(
                f"argument {index} is not valid UTF-8: {arg.encode('utf-8', 'replace').decode()[:60]!r}",
                EXIT_BAD_INPUT,
            )
    try:
        cli.main(prog_name="dagctl", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", EXIT_FAILED)
    except click.UsageError as exc:
        fail(exc.format_message(), EXIT_BAD_INPUT)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SchemaOutOfDate as exc:
        fail(str(exc), EXIT_FAILED)
    except DagdError as exc:
        fail(str(exc), exit_code_for(exc))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    entry()
