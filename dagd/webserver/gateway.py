"""The UI's only way to the supervisor: the typed gRPC client, called off the event loop.

``Gateway.call(fn)`` runs ``fn(client)`` on a worker thread (the client is blocking). The client
is created on first use and dropped when the supervisor is unreachable, so a webserver started
before the supervisor, or outliving a supervisor restart, finds the new one by itself.

``submission_metadata`` turns a browser request's HTTP headers into the gRPC metadata a run
coordinator's ``prepare_submission`` hook sees (SPEC §4, run attribution), the same way a gRPC
client's own metadata reaches it.
"""

from __future__ import annotations

import pathlib
import re
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import anyio.to_thread

from dagd.client.client import Client, SupervisorUnreachable

T = TypeVar("T")

CLIENT_HEADER = ("x-dagd-client", "webserver")
# Never forwarded: credentials (the UI's session and CSRF cookies, tokens), hop-by-hop and
# transport headers that gRPC owns or rejects, and the one header the webserver sets itself.
_DROPPED = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "content-type",
        "user-agent",  # gRPC replaces it with its own
        "x-dagd-client",
    }
)
_VALID_KEY = re.compile(r"^[0-9a-z_.-]+$")
_MAX_VALUE = 2048
_MAX_TOTAL = 6000  # stay well inside gRPC's default 8 KiB metadata limit


def submission_metadata(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """gRPC metadata for a submission made through the UI: the request's headers, made safe.

    Header names are lower-cased (gRPC requires it); a header whose name or value gRPC would
    refuse (non-ASCII, control characters, ``-bin`` or ``grpc-`` names) is left out rather than
    failing the submission. ``x-dagd-client: webserver`` comes last, so it is the value hooks see.
    """
    out: list[tuple[str, str]] = []
    total = 0
    for raw_key, value in headers:
        key = raw_key.lower()
        if key in _DROPPED or key.startswith(("grpc-", ":")) or key.endswith("-bin"):
            continue
        if not _VALID_KEY.match(key) or len(value) > _MAX_VALUE:
            continue
        if any(not 0x20 <= ord(c) <= 0x7E for c in value):
            continue
        total += len(key) + len(value)
        if total > _MAX_TOTAL:
            break
        out.append((key, value))
    out.append(CLIENT_HEADER)
    return out


class Gateway:
    def __init__(
        self, home: pathlib.Path, *, address: str | None = None, token: str | None = None, timeout: float = 10
    ) -> None:
        self.home = home
        self.address = address
        self.token = token
        self.timeout = timeout
        self._client: Client | None = None
        self._lock = threading.Lock()

    def _get(self) -> Client:
        with self._lock:
            if self._client is None:
                client = Client.for_home(
                    self.home, address=self.address, token=self.token, metadata=[CLIENT_HEADER]
                )
                client.timeout = self.timeout
                self._client = client
            return self._client

    def _drop(self, client: Client) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
        client.close()

    def call_sync(self, fn: Callable[[Client], T]) -> T:
        client = self._get()
        try:
            return fn(client)
        except SupervisorUnreachable:
            self._drop(client)  # the supervisor may come back at a new address
            raise

    def client(self) -> Client:
        """The shared client, for a stream (dagd.webserver.pages.live) that runs on its own thread."""
        return self._get()

    def stream_failed(self, client: Client, exc: BaseException) -> None:
        """A stream of ``client`` ended with ``exc``: drop the client if the supervisor is gone, as
        call_sync does, so the browser's reconnect finds the supervisor at its new address."""
        import grpc

        if isinstance(exc, grpc.RpcError) and isinstance(client.translate_error(exc), SupervisorUnreachable):
            self._drop(client)

    async def call(self, fn: Callable[[Client], T]) -> T:
        return await anyio.to_thread.run_sync(self.call_sync, fn)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
