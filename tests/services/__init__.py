"""Real services for the tests: one way to start a process, find it a port and wait for it.

Every service a fixture starts (mosquitto, snmpd, PostgreSQL, VictoriaMetrics,
Alertmanager) goes through these:

``free_port(kind="tcp"|"udp")``
    A loopback port nothing is bound to right now.
``eventually(check, timeout_s=..., what=..., process=...)``
    Calls ``check`` until it returns something truthy, within a time bound and a bounded
    number of tries; fails with what was awaited, the last error, and the tail of the
    service's log if its process exited meanwhile.
``ManagedProcess``
    One service process: its output in a log file, started, waited for until ready,
    stopped with its stop signal (then SIGKILL), or killed like a crash.

Tests that need none of them run with ``NETQOS_TEST_NO_SERVICES=1`` (``make unit``): a
``ManagedProcess`` then refuses to start, so a test in the wrong folder (or without the
``services`` marker) fails with a message that says so instead of quietly needing a server.
"""

from tests.services.ports import LOOPBACK, accepts, free_port, wait_port
from tests.services.process import (
    NO_SERVICES_ENV,
    ManagedProcess,
    ProcessExited,
    ServicesDisabled,
    binary,
    terminate,
)
from tests.services.wait import eventually

__all__ = [
    "LOOPBACK",
    "NO_SERVICES_ENV",
    "ManagedProcess",
    "ProcessExited",
    "ServicesDisabled",
    "accepts",
    "binary",
    "eventually",
    "free_port",
    "terminate",
    "wait_port",
]
