"""Test hosts as network namespaces: a multi-host test bed on one machine (needs root).

:func:`multi_host` yields a :class:`HostBed`; ``net.host(name)`` makes a :class:`NetHost`: a network
namespace whose only links are loopback and one veth pair to this machine, addressed in a private
/30 of 10.213.0.0/16 picked free (this side ``.1``, the host's side ``.2``). Nothing else routes
there, so only those two addresses and loopback ever receive its traffic. Services the host needs
(PostgreSQL, a broker) are reached through a :class:`~helpers.tcp_proxy.TcpProxy` listening on this
side's address of its link, so the test controls every path. ``host.command(...)`` wraps a command
to run inside the namespace, with the host's own hostname (``unshare --uts``), so holder ids and
logs name it. A partition is ``host.cut()`` (the link goes down: connections hang, as on a real
network) and ``host.heal()``.

Nothing outlives a test, even when pytest is killed:

- the ``with`` block deletes its namespaces (their veth pairs go with them) in a ``finally``;
- a guard process, in its own session like ``helpers/reaper.py``, blocks reading a pipe only the
  test process holds; at end of file (the test process died, or finished) it deletes every
  namespace of that test process that is left;
- namespaces are named ``dagdt<pid>x<n>`` after the test process that made them, and
  :func:`sweep_stale` (run at the first use in each test process) deletes those of processes that
  no longer exist.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator

PREFIX = "dagdt"
# Host numbers are unique in the test process, not per bed: a bed closed a moment ago may still have
# its veth pair (the kernel destroys it after the namespace, asynchronously), and two beds may be open
# at once.
_host_numbers = itertools.count()
SUBNET = ipaddress.ip_network("10.213.0.0/16")
_swept = False


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=30)


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delete_namespace(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False, timeout=30)


def ours(owner: int) -> list[str]:
    return [ns for ns in namespaces() if ns.startswith(f"{PREFIX}{owner}x")]


def sweep_stale() -> list[str]:
    """Delete the test namespaces of test processes that no longer exist; their names."""
    swept = []
    for ns in namespaces():
        match = re.fullmatch(rf"{PREFIX}(\d+)x\d+", ns)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            delete_namespace(ns)
            swept.append(ns)
    return swept


def _free_slash30() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    taken = {ipaddress.ip_interface(m).network for m in re.findall(r"inet (\S+)", used)}
    subnets = list(SUBNET.subnets(new_prefix=30))
    for candidate in random.sample(subnets, 64):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate  # type: ignore[return-value]
    raise RuntimeError("no free /30 in 10.213.0.0/16 for a test host")


class NetHost:
    """One test host: a network namespace with a veth link to this machine."""

    def __init__(self, netns: str, name: str, index: int) -> None:
        self.netns = netns
        self.name = name
        net = _free_slash30()
        here, there = list(net.hosts())
        self.address, self.local_address = str(there), str(here)  # the host's side, this side's
        self.veth_here = f"dt{os.getpid() % 10**7}{index}h"[:15]
        veth_there = f"dt{os.getpid() % 10**7}{index}n"[:15]
        subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True, timeout=30)
        _ip("link", "add", self.veth_here, "type", "veth", "peer", "name", veth_there)
        _ip("link", "set", veth_there, "netns", netns)
        _ip("addr", "add", f"{here}/30", "dev", self.veth_here)
        _ip("link", "set", self.veth_here, "up")
        _ip("addr", "add", f"{there}/30", "dev", veth_there, netns=netns)
        _ip("link", "set", veth_there, "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host: its network namespace, its own hostname."""
        return [
            "ip", "netns", "exec", self.netns,
            "unshare", "--uts", "--",
            "sh", "-c", f'hostname {self.name} && exec "$@"', "sh", *argv,
        ]  # fmt: skip

    def cut(self) -> None:
        """Partition: the link goes down; connections through it hang."""
        _ip("link", "set", self.veth_here, "down")

    def heal(self) -> None:
        _ip("link", "set", self.veth_here, "up")


class HostBed:
    def __init__(self) -> None:
        self.hosts: list[NetHost] = []
        self._guard = subprocess.Popen(
            [sys.executable, __file__, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def host(self, name: str) -> NetHost:
        index = next(_host_numbers)
        host = NetHost(f"{PREFIX}{os.getpid()}x{index}", name, index)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        for host in self.hosts:
            _ip("link", "delete", host.veth_here, check=False)  # at once, and its peer with it
            delete_namespace(host.netns)
        assert self._guard.stdin is not None
        self._guard.stdin.close()  # the guard sweeps (nothing left) and exits
        self._guard.wait(timeout=30)


@contextlib.contextmanager
def multi_host() -> Iterator[HostBed]:
    global _swept
    if not _swept:
        sweep_stale()
        _swept = True
    net = HostBed()
    try:
        yield net
    finally:
        net.close()


def _guard(owner: int) -> None:
    sys.stdin.buffer.read()  # end of file: the test process is gone, or done
    for ns in ours(owner):
        delete_namespace(ns)


if __name__ == "__main__":
    _guard(int(sys.argv[1]))
