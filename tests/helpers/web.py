"""The web UI under test: a real ``dagctl dev`` with its webserver, Debian's Chromium, plain HTTP.

Chromium is Debian's package at /usr/bin/chromium, driven by Playwright's Python package (no
browser download). Without it the browser tests fail, never skip: ``scripts/test`` installs it.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from dagd.client.client import Client
from helpers.procs import DagdProcess, wait_for

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def published_url(home: pathlib.Path) -> str | None:
    try:
        return str(json.loads((home / "webserver.json").read_text())["url"])
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str
    cookies: dict[str, str] = field(default_factory=dict)


def request(
    url: str,
    path: str,
    *,
    method: str = "GET",
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    timeout: float = 15,
) -> Response:
    """One HTTP request, no redirects followed, cookies given and returned explicitly."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    all_headers = dict(headers or {})
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if cookies:
        all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    try:
        conn.request(method, path, body=body, headers=all_headers)
        raw = conn.getresponse()
        text = raw.read().decode("utf-8", errors="replace")
        set_cookies = {}
        for key, value in raw.getheaders():
            if key.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                set_cookies[name] = rest.split(";", 1)[0]
        return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, text, set_cookies)
    finally:
        conn.close()


def form_session(url: str, path: str = "/launchpad") -> tuple[dict[str, str], str]:
    """What a browser has after loading a page: the CSRF cookie and the token its forms carry."""
    page = request(url, path)
    assert page.status == 200, f"GET {path}: {page.status}"
    match = CSRF_INPUT.search(page.body)
    assert match, f"no CSRF field on {path}"
    return page.cookies, match.group(1)


class WebDeployment:
    """``dagctl dev --web-port 0``: the supervisor, its daemons and the webserver on a free port."""

    def __init__(self, dagd: DagdProcess) -> None:
        self.dagd = dagd
        self.url = ""

    @property
    def home(self) -> pathlib.Path:
        return self.dagd.home

    def start(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.dagd.start(*args, "--web-port", "0", env=env, timeout=timeout)
        self.url = wait_for(lambda: published_url(self.home), timeout, "the webserver to publish its URL")
        wait_for(lambda: request(self.url, "/healthz").status == 200, timeout, "the webserver to answer")

    def client(self) -> Client:
        """The gRPC client, in this process (quicker than a ``dagctl`` per question)."""
        return Client.for_home(self.home, metadata=[("x-dagd-user", "tests")])

    def runs(self) -> list[dict[str, Any]]:
        with self.client() as client:
            return client.list_runs(limit=1000)[0]

    def run(self, run_id: str) -> dict[str, Any]:
        with self.client() as client:
            return client.get_run(run_id)[0]

    def daemons(self) -> dict[str, dict[str, Any]]:
        with self.client() as client:
            return {d["name"]: d for d in client.daemon_status()["daemons"]}

    def submit(self, job: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
        with self.client() as client:
            return client.submit(job, tags=tags)
