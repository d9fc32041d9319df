"""Loopback ports for services started by the tests."""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator
from typing import Literal

from tests.services.wait import eventually

LOOPBACK = "127.0.0.1"
# "LOW-HIGH": free_port draws from these ports instead of asking the kernel for one. The
# second pytest process of `make test` (tests/run_suite.py) gets a range outside the kernel's
# ephemeral range, so no port the main suite is given (bind to port 0, outgoing connections)
# can be one of its own: its ten-minute outage test stops its broker and starts it again on
# the same port, which in the shared ephemeral range another test could take meanwhile.
PORT_RANGE_ENV = "NETQOS_TEST_PORTS"


def port_range_from_env() -> tuple[int, int] | None:
    """The range of NETQOS_TEST_PORTS ("LOW-HIGH", both included); None when unset."""
    text = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not text:
        return None
    try:
        low, high = (int(x) for x in text.split("-"))
    except ValueError:
        raise ValueError(f"{PORT_RANGE_ENV}={text!r}: expected LOW-HIGH, e.g. 30768-32767") from None
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"{PORT_RANGE_ENV}={text!r}: expected 1024 <= LOW <= HIGH <= 65535")
    return low, high


# One cursor per range and process: successive calls hand out successive ports (a port just
# returned is not bound yet, so it would look free to the next call too), from a random start.
_cursors: dict[tuple[int, int], Iterator[int]] = {}


def _next_in_range(low: int, high: int) -> Iterator[int]:
    cursor = _cursors.get((low, high))
    if cursor is None:
        ports = list(range(low, high + 1))
        start = random.randrange(len(ports))
        cursor = _cursors[(low, high)] = itertools.cycle(ports[start:] + ports[:start])
    return cursor


def _bindable(host: str, port: int, family: socket.AddressFamily, sock_type: socket.SocketKind) -> bool:
    with socket.socket(family, sock_type) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOOPBACK, kind: Literal["tcp", "udp"] = "tcp") -> int:
    """A port nothing is bound to on `host` right now (in this thread's network namespace).

    Another process may take it before the service binds it: launchers that can tell (the
    service exits with "Address already in use") try again with a new one. With
    NETQOS_TEST_PORTS set, the port comes from that range (the next one that binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    reserved = port_range_from_env()
    if reserved is not None:
        low, high = reserved
        cursor = _next_in_range(low, high)
        # Bounded: one pass over the range.
        for port in itertools.islice(cursor, high - low + 1):
            if _bindable(host, port, family, sock_type):
                return port
        raise RuntimeError(f"no free {kind} port on {host} in {PORT_RANGE_ENV}={low}-{high}")
    with socket.socket(family, sock_type) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def accepts(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on `host`:`port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((host, port)) == 0


def wait_port(port: int, timeout_s: float = 10.0, host: str = LOOPBACK) -> None:
    """Until something accepts TCP connections on `host`:`port`."""
    eventually(lambda: accepts(port, host), timeout_s=timeout_s, what=f"something listening on {host}:{port}")
