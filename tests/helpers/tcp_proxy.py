"""A TCP proxy the test controls, to make a database unreachable and bring it back.

``outage()`` closes every proxied connection and refuses new ones (connection refused, so clients
fail fast instead of hanging); ``restore()`` accepts again. ``stall()`` is the nastier network
partition: connections stay open and new ones are accepted, but nothing is forwarded either way
(clients hang until their own timeouts); ``resume()`` lets the held bytes through. Only loopback
addresses are used.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host  # another address only for a test host's link (helpers/netns.py)
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._closed = False
        self._flowing = threading.Event()
        self._flowing.set()
        # The port stays bound for the proxy's whole life, listening or not: an outage must not
        # free it for another process (tests run in parallel, and the kernel hands out free
        # ports to every ``bind(0)`` and outgoing connection), or ``restore()`` could not have it back.
        self._listener: socket.socket | None = None
        self._held: socket.socket | None = _bound((listen_host, 0))
        self.port: int = self._held.getsockname()[1]
        self.restore()

    def restore(self) -> None:
        """Accept again (on the same port)."""
        with self._lock:
            held, self._held = self._held, None
        listener = held if held is not None else _bound((self.listen_host, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def outage(self) -> None:
        """Cut every proxied connection and refuse new ones (the port stays ours, not listening)."""
        self._drop(hold=not self._closed)

    def _drop(self, hold: bool) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        with self._lock:
            if hold and self._held is None:
                # Bound without listen(): connection attempts are refused, and nobody else gets the
                # port. (Should the bind fail anyway, restore() binds again, as before.)
                with contextlib.suppress(OSError):
                    self._held = _bound((self.listen_host, self.port))
            elif not hold and self._held is not None:
                self._held.close()
                self._held = None

    def stall(self) -> None:
        """Forward nothing, in either direction, until :meth:`resume` (connections stay open)."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self._drop(hold=False)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b, self._flowing), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            flowing.wait()  # stalled: hold the bytes, as a partitioned network would
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _bound(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def proxy_to(host: str, port: int, listen_host: str = "127.0.0.1") -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port, listen_host)
    try:
        yield proxy
    finally:
        proxy.close()
