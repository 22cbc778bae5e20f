"""Run the web UI: read settings, refuse unsafe ones, bind, publish the URL, serve until stopped.

The socket is bound before uvicorn starts, so a busy port fails at once with one clear line and
port 0 yields a real port to publish. The URL goes to ``$DAGD_HOME/webserver.json`` (removed on
exit), which is how ``dagctl dev`` and the tests find a UI started on any free port.

Under ``dagctl dev`` the UI runs as a child process that watches its stdin: when the parent dies,
even by SIGKILL, the pipe closes and the UI exits, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import pathlib
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from dagd import home as layout
from dagd.errors import ConfigError
from dagd.instance.config import InstanceConfig, is_loopback_host, load_instance_config
from dagd.process_protocol import watch_parent_eof
from dagd.webserver.app import create_app
from dagd.webserver.child import PUBLISHED_FILE
from dagd.webserver.gateway import Gateway
from dagd.webserver.middleware import SecuritySettings
from dagd.webserver.render import UI

log = logging.getLogger("dagd.webserver")


@dataclass(frozen=True)
class WebSettings:
    home: pathlib.Path
    host: str
    port: int
    access_token: str | None
    refresh_seconds: float
    grpc_address: str | None = None
    grpc_token: str | None = None


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


def read_access_token(config: InstanceConfig, home: pathlib.Path, config_file: pathlib.Path) -> str | None:
    web = config.webserver
    if web.token:
        return web.token
    if not web.token_file:
        return None
    from dagd.instance.config import read_token_file

    return read_token_file(home, web.token_file, key="webserver.token_file", config_file=config_file)


def load_settings(
    home: pathlib.Path,
    *,
    host: str | None = None,
    port: int | None = None,
    grpc_address: str | None = None,
    grpc_token: str | None = None,
) -> WebSettings:
    """Settings from ``dagd.yaml``'s ``webserver:`` section, with command-line overrides."""
    config_file = layout.config_file(home)
    config = load_instance_config(config_file, sections=("webserver",))  # the rest is the supervisor's
    token = read_access_token(config, home, config_file)
    chosen_host = host or config.webserver.host
    if not is_loopback_host(chosen_host) and token is None:
        raise ConfigError(
            f"refusing to serve the web UI on {chosen_host} without an access token: anyone who can "
            f"reach it could launch and terminate runs (set webserver.token or webserver.token_file "
            f"in {config_file}, or listen on 127.0.0.1)"
        )
    return WebSettings(
        home=home,
        host=chosen_host,
        port=config.webserver.port if port is None else port,
        access_token=token,
        refresh_seconds=config.webserver.refresh_interval_seconds,
        grpc_address=grpc_address,
        grpc_token=grpc_token,
    )


def port_holder(port: int) -> str:
    """Words naming what listens on ``port`` (" by the dagd web UI of DAGD_HOME=..."), or ""."""
    import psutil

    try:
        pids = {
            c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid
            and c.status == psutil.CONN_LISTEN
        }  # fmt: skip
        for pid in sorted(pids):
            cmdline = psutil.Process(pid).cmdline()
            dagctl = any(part.endswith("dagctl") or part == "dagd.client.cli" for part in cmdline)
            if "dagd.webserver" in cmdline or (dagctl and "webserver" in cmdline):
                home = cmdline[cmdline.index("--home") + 1] if "--home" in cmdline[:-1] else None
                home = home or psutil.Process(pid).environ().get("DAGD_HOME", "?")
                return f" by the dagd web UI of DAGD_HOME={home} (pid {pid})"
            return f" by pid {pid} ({' '.join(cmdline)[:80]})"
    except (psutil.Error, OSError, ValueError):
        pass  # not allowed to look (another user's process): say nothing rather than guess
    return ""


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"web UI cannot listen on {host}:{port}: the port is taken{port_holder(port)}; choose "
                f"another with `dagctl dev --web-port N` (or `dagctl webserver --port N`, or webserver.port "
                f"in dagd.yaml; 0 picks a free port), or stop what holds it"
            ) from None
        raise ConfigError(f"web UI cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}"


@contextlib.contextmanager
def published(home: pathlib.Path, url: str) -> Iterator[None]:
    path = home / PUBLISHED_FILE
    layout.write_json_atomic(path, {"pid": os.getpid(), "url": url}, indent=None)
    try:
        yield
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


def _exit_when_stdin_closes(server: uvicorn.Server) -> None:
    def stop() -> None:
        server.should_exit = True

    watch_parent_eof(on_eof=stop)


def serve(settings: WebSettings, *, exit_with_parent: bool = False) -> int:
    """Serve the UI in the foreground until SIGINT/SIGTERM (or, with ``exit_with_parent``, stdin EOF)."""
    sock = bind(settings.host, settings.port)
    url = url_of(sock, settings.host)
    gateway = Gateway(settings.home, address=settings.grpc_address, token=settings.grpc_token)
    ui = UI(gateway=gateway, refresh_seconds=settings.refresh_seconds, access_token=settings.access_token)
    app = create_app(
        ui, SecuritySettings(csrf_key=secrets.token_bytes(32), access_token=settings.access_token)
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        proxy_headers=False,
        server_header=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    if exit_with_parent:
        _exit_when_stdin_closes(server)
    # uvicorn handles SIGINT/SIGTERM while it serves, then restores the previous handlers and
    # re-raises the signal. Make those previous handlers no-ops, so the re-raised signal lets the
    # cleanup below run (unpublish the URL) instead of killing the process first.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    with published(settings.home, url):
        log.info("web UI on %s", url)
        try:
            asyncio.run(server.serve(sockets=[sock]))
        finally:
            gateway.close()
            sock.close()
    return 0
