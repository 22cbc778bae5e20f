"""The webserver as a process, over plain HTTP and without a supervisor: start, refuse, sign in, exit.

No browser and no supervisor here: these are the process's own duties (binding, the access token,
exiting with its parent), which hold whether or not anything answers on the gRPC side.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from helpers.procs import DAGCTL, assert_no_leftovers, wait_for
from helpers.web import CSRF_INPUT, published_url, request

WEBSERVER = [sys.executable, "-m", "dagd.webserver"]


@pytest.fixture
def spawned(home: pathlib.Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert_no_leftovers(home)


def start(
    procs: list[subprocess.Popen[bytes]], home: pathlib.Path, *args: str, command: list[str] = WEBSERVER
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*command, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DAGD_HOME": str(home)},
    )
    procs.append(proc)
    return proc


def wait_url(proc: subprocess.Popen[bytes], home: pathlib.Path) -> str:
    def url() -> str | None:
        if proc.poll() is not None:
            output = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"webserver exited with {proc.returncode}: {output}")
        return published_url(home)

    return wait_for(url, 30, "the webserver to publish its URL")


@pytest.mark.timeout(60)
def test_without_supervisor_pages_say_so_and_it_exits_with_its_parent(
    home: pathlib.Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    proc = start(spawned, home, "--port", "0", "--exit-with-parent")
    url = wait_url(proc, home)
    assert request(url, "/healthz").body == "ok"
    page = request(url, "/runs")
    assert page.status == 503
    assert "Cannot reach the supervisor" in page.body

    assert proc.stdin is not None
    proc.stdin.close()  # what a SIGKILLed `dagctl dev` looks like from here
    assert proc.wait(timeout=15) == 0
    assert published_url(home) is None, "webserver.json left behind"


@pytest.mark.timeout(60)
def test_access_token_guards_every_page(home: pathlib.Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    token = "correct-horse-battery-staple"
    (home / "dagd.yaml").write_text(f"webserver: {{token: {token}}}\n")
    proc = start(spawned, home, "--port", "0", command=[*DAGCTL, "webserver"])
    url = wait_url(proc, home)

    anonymous = request(url, "/runs?tab=queued")
    assert anonymous.status == 303
    assert anonymous.headers["location"] == "/login?next=%2Fruns%3Ftab%3Dqueued"
    assert request(url, "/launchpad", method="POST", form={"job": "x"}).status == 401
    assert request(url, "/healthz").status == 200

    login = request(url, "/login?next=/runs")
    match = CSRF_INPUT.search(login.body)
    assert login.status == 200 and match
    cookies, csrf = login.cookies, match.group(1)
    wrong = request(url, "/login", method="POST", form={"token": "guess", "csrf_token": csrf, "next": "/runs"},
                    cookies=cookies)  # fmt: skip
    assert wrong.status == 401 and "dagd_session" not in wrong.cookies
    right = request(url, "/login", method="POST", form={"token": token, "csrf_token": csrf, "next": "/runs"},
                    cookies=cookies)  # fmt: skip
    assert right.status == 303 and right.headers["location"] == "/runs"
    session = right.cookies["dagd_session"]
    assert token not in session
    signed_in = request(url, "/runs", cookies={**cookies, "dagd_session": session})
    assert signed_in.status == 503  # past the sign-in; no supervisor to ask
    assert token not in signed_in.body
    assert request(url, "/runs", headers={"Authorization": f"Bearer {token}"}).status == 503
    assert request(url, "/runs", cookies={"dagd_session": "made.up"}).status == 303

    proc.send_signal(signal.SIGINT)  # Ctrl-C on `dagctl webserver`
    assert proc.wait(timeout=15) == 0
    assert published_url(home) is None


@pytest.mark.timeout(60)
def test_refuses_a_public_address_without_a_token(
    home: pathlib.Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    proc = start(spawned, home, "--host", "0.0.0.0", "--port", "0")
    assert proc.wait(timeout=30) == 2
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "without an access token" in output, output


@pytest.mark.timeout(60)
def test_busy_port_fails_at_once_with_one_line(
    home: pathlib.Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = start(spawned, home, "--port", str(port))
        assert proc.wait(timeout=30) == 2
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert f"cannot listen on 127.0.0.1:{port}" in output, output
    assert output.count("\n") == 1, output
