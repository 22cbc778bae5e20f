"""A cut link to PostgreSQL fails a call within seconds instead of hanging it for minutes.

A partition drops packets; nothing is refused. A query sent on such a connection is never
acknowledged and its answer never comes, so ``statement_timeout`` (the server's verdict) cannot
help: before keepalives and ``tcp_user_timeout`` (``PG_CONNECTION_ARGS``) the call hung in the
kernel's retransmissions for many minutes, and a leader cut off from the database could not come
back as a standby after the link healed (issue #16). Each case runs its client in a subprocess on a
test host (helpers/netns.py) that reaches PostgreSQL only through a proxy on its link, and cuts the
link under an established connection: the supervisor's pool, a daemon's own connections, and the
leader's LISTEN connection (which must notice the cut and, once healed, hear notifications again).
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import IO, Any

import psycopg
import pytest
from helpers import netns
from helpers.tcp_proxy import proxy_to

from dagd.storage.engine import open_storage
from dagd.storage.sql import PG_CONNECT_TIMEOUT_SECONDS, PG_TCP_USER_TIMEOUT_MS

# A checked-out connection fails within tcp_user_timeout; the pool (or the daemon's idle list) then
# connects afresh, which fails within connect_timeout; plus a loaded 2-core machine.
BOUND = PG_TCP_USER_TIMEOUT_MS / 1000 + PG_CONNECT_TIMEOUT_SECONDS + 6
# The keepalive path (an idle LISTEN connection): idle 5 s, then probes until tcp_user_timeout.
LISTEN_BOUND = 5 + PG_TCP_USER_TIMEOUT_MS / 1000 + 6

CLIENT = """
import json, logging, sys, time
kind, url = sys.argv[1], sys.argv[2]
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

def say(**fields):
    print(json.dumps(fields), flush=True)

if kind == "listen":
    from dagd.supervisor.wakeups import WakeListener
    conninfo = "postgresql://" + url.split("://", 1)[1]
    WakeListener(conninfo, lambda daemon: say(woke=daemon)).start()
    time.sleep(3600)

from dagd.errors import StorageUnavailable
from dagd.storage.leases import SUPERVISOR_LEASE
if kind == "supervisor":
    from dagd.storage.engine import open_storage
    db = open_storage(url, create=False)
else:
    from dagd.storage.database import DirectDatabase
    db = DirectDatabase(url)
db.leases.get(SUPERVISOR_LEASE)  # a connection established, then kept idle for reuse
say(ready=True)
sys.stdin.readline()  # the link is cut now
began = time.monotonic()
try:
    db.leases.get(SUPERVISOR_LEASE)
    say(error=None, seconds=time.monotonic() - began)
except StorageUnavailable as exc:
    say(error=str(exc), seconds=time.monotonic() - began)
"""


@contextlib.contextmanager
def client_on_a_test_host(kind: str, pg_url: str) -> Iterator[tuple[netns.NetHost, subprocess.Popen[str]]]:
    """The client, on a test host whose link to PostgreSQL (through a proxy) the test can cut."""
    parsed = urllib.parse.urlparse(pg_url.replace("postgresql+psycopg", "postgresql"))
    pg_host, pg_port = parsed.hostname or "127.0.0.1", parsed.port or 5432
    with netns.multi_host() as bed:
        host = bed.host("pgclient")
        with proxy_to(pg_host, pg_port, listen_host=host.local_address) as proxy:
            url = pg_url.replace(f"{pg_host}:{pg_port}", f"{host.local_address}:{proxy.port}")
            child = subprocess.Popen(
                host.command(sys.executable, "-c", CLIENT, kind, url),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                yield host, child
            finally:
                if child.poll() is None:
                    child.kill()
                child.communicate(timeout=30)


def line(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    text = child.stdout.readline()
    assert text, f"the client exited ({child.poll()}): {child.stderr.read() if child.stderr else ''}"
    return json.loads(text)  # type: ignore[no-any-return]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["supervisor", "daemon"])
def test_a_query_on_a_cut_link_fails_within_the_bound_instead_of_hanging(kind: str, pg_url: str) -> None:
    """``supervisor``: the SQLAlchemy pool (pre-ping on a pooled connection); ``daemon``: a
    daemon's DirectDatabase (``SELECT 1`` on an idle connection). Before #16 both hung for
    minutes: the test's own timeout failed it."""
    open_storage(pg_url).dispose()  # the schema, created on the fast path
    with client_on_a_test_host(kind, pg_url) as (host, child):
        assert line(child) == {"ready": True}
        host.cut()
        cut_at = time.monotonic()
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        answer = line(child)
        waited = time.monotonic() - cut_at
        assert answer["error"] is not None and answer["error"].startswith("storage unavailable"), answer
        assert waited < BOUND, f"the call failed only after {waited:.1f}s (bound {BOUND:.0f}s): {answer}"


@pytest.mark.timeout(120)
def test_the_leaders_listen_connection_notices_a_cut_link_and_hears_again_once_healed(pg_url: str) -> None:
    """Idle, a LISTEN connection sends nothing: only keepalives find that its link is cut. Before
    #16 it waited forever on a dead connection, and wake-ups from standbys were lost until then."""
    with (
        client_on_a_test_host("listen", pg_url) as (host, child),
        psycopg.connect(
            "postgresql://" + pg_url.split("://", 1)[1], autocommit=True, connect_timeout=5
        ) as notifier,
    ):
        out, err = lines_of(child.stdout), lines_of(child.stderr)

        def heard(within: float) -> None:
            while not out.empty():
                out.get_nowait()  # only what is heard from now on counts
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                notifier.execute("SELECT pg_notify('dagd_wake', current_schema() || ':run_queue')")
                with contextlib.suppress(queue.Empty):
                    assert json.loads(out.get(timeout=0.5)) == {"woke": "run_queue"}
                    return
            raise AssertionError(f"no wake-up heard within {within:.0f}s")

        heard(30)
        host.cut()
        cut_at = time.monotonic()
        noticed = ""
        while time.monotonic() - cut_at < LISTEN_BOUND and "reconnecting" not in noticed:
            with contextlib.suppress(queue.Empty):
                noticed += err.get(timeout=0.5)
        assert "wake-up listener" in noticed and "reconnecting" in noticed, (
            f"the listener did not notice the cut within {LISTEN_BOUND:.0f}s: {noticed!r}"
        )
        host.heal()
        heard(PG_CONNECT_TIMEOUT_SECONDS + 15)


def lines_of(stream: IO[str] | None) -> queue.Queue[str]:
    """The stream's lines as they come, read by a thread (no blocking read in the test)."""
    assert stream is not None
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for text in stream:
            lines.put(text)

    threading.Thread(target=read, daemon=True).start()
    return lines
