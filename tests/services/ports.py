"""Loopback ports for services started by the tests."""

from __future__ import annotations

import socket
from typing import Literal

from tests.services.wait import eventually

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK, kind: Literal["tcp", "udp"] = "tcp") -> int:
    """A port nothing is bound to on `host` right now (in this thread's network namespace).

    Another process may take it before the service binds it: launchers that can tell (the
    service exits with "Address already in use") try again with a new one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
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
