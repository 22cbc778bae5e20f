"""Several supervisors on one PostgreSQL, each on its own test host (helpers/netns.py).

Shared by the HA end-to-end tests (tests/e2e/test_ha_e2e.py) and the chaos battery's two-host
mode (helpers/chaos/two_hosts.py): a supervisor home per host, each host reaching PostgreSQL only
through a proxy on its own link (so ``host.cut()`` partitions it), and the client calls that tell
a supervisor's role.
"""

from __future__ import annotations

import contextlib
import pathlib
import urllib.parse
from typing import Any

from dagd.client.client import Client
from helpers import netns
from helpers.procs import DagdProcess
from helpers.tcp_proxy import proxy_to


def supervisor(tmp_path: pathlib.Path, name: str, pg_url: str, config: str) -> DagdProcess:
    """A supervisor with its own home and log, as on its own host; ``config``: dagd.yaml after storage."""
    proc = DagdProcess(tmp_path / name / "home")
    proc.home.mkdir(parents=True)
    proc.write_config(f"storage:\n  postgres:\n    url: '{pg_url}'\n{config}")
    return proc


def two_test_hosts(
    stack: contextlib.ExitStack, tmp_path: pathlib.Path, pg_url: str, config: str
) -> tuple[list[netns.NetHost], list[DagdProcess]]:
    """Two test hosts (network namespaces, own hostnames ``hosta`` and ``hostb``), each reaching
    PostgreSQL only through a proxy on its link, and a supervisor home for each; stopped and
    removed when ``stack`` closes."""
    parsed = urllib.parse.urlparse(pg_url.replace("postgresql+psycopg", "postgresql"))
    pg_host, pg_port = parsed.hostname or "127.0.0.1", parsed.port or 5432
    bed = stack.enter_context(netns.multi_host())
    hosts, procs = [], []
    for name in ("hosta", "hostb"):
        test_host = bed.host(name)
        proxy = stack.enter_context(proxy_to(pg_host, pg_port, listen_host=test_host.local_address))
        url = pg_url.replace(f"{pg_host}:{pg_port}", f"{test_host.local_address}:{proxy.port}")
        hosts.append(test_host)
        procs.append(supervisor(tmp_path, name, url, config))
    stack.callback(lambda: [p.stop() for p in procs])
    return hosts, procs


def start_on(
    test_host: netns.NetHost,
    proc: DagdProcess,
    defs_file: pathlib.Path,
    *,
    standby: bool,
    wait_healthy: bool | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """``dagctl daemon run`` (``--standby``) on ``test_host``; waits for health unless a standby."""
    command = ("daemon", "run", "--standby") if standby else ("daemon", "run")
    wait = not standby if wait_healthy is None else wait_healthy
    proc.start("-f", str(defs_file), command=command, wait_healthy=wait, wrap=test_host.command(), env=env)


def client(proc: DagdProcess) -> Client:
    return Client(f"unix:{proc.home / 'run' / 'dagd.sock'}")


def info(proc: DagdProcess, timeout: float | None = None) -> dict[str, Any]:
    with client(proc) as c:
        if timeout is not None:
            c.timeout = timeout
        return c.instance_info()


def role(proc: DagdProcess, timeout: float | None = None) -> str | None:
    """``leader`` or ``standby`` as ``proc`` says, None if it does not answer."""
    try:
        return info(proc, timeout)["role"]
    except Exception:
        return None
