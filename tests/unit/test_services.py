"""tests/services, the one way the fixtures start a service: checked with a toy service (a
Python child process) so the unit run needs no server."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.services import (
    NO_SERVICES_ENV,
    ManagedProcess,
    ProcessExited,
    ServicesDisabled,
    accepts,
    eventually,
    free_port,
    wait_port,
)
from tests.services.ports import PORT_RANGE_ENV

# A service that says it is ready by creating a file, then serves until SIGTERM.
TOY = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
print("toy starting", flush=True)
pathlib.Path(sys.argv[1]).touch()
for _ in range(600):
    time.sleep(0.1)
"""


@pytest.fixture(autouse=True)
def services_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # These start a toy process, not a service: allowed under `make unit` too.
    monkeypatch.delenv(NO_SERVICES_ENV, raising=False)


def test_eventually_returns_the_first_truthy_result() -> None:
    answers = iter([None, 0, "", "ready", "later"])
    assert eventually(lambda: next(answers), timeout_s=5.0, what="ready", interval_s=0.001) == "ready"


def test_eventually_counts_ignored_errors_as_not_yet_and_names_what_it_waited_for() -> None:
    calls = []

    def check() -> bool:
        calls.append(1)
        raise ConnectionRefusedError("nobody home")

    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"not the toy answering after 0.2 s .*nobody home"):
        eventually(check, timeout_s=0.2, what="the toy answering", interval_s=0.01)
    assert time.monotonic() - t0 < 5.0 and len(calls) >= 2
    with pytest.raises(ValueError):  # not an ignored kind: raised at once
        eventually(lambda: int("x"), timeout_s=5.0, what="a number")


def test_free_port_is_bindable_and_wait_port_sees_a_listener() -> None:
    port = free_port()
    assert 0 < port < 65536 and not accepts(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        wait_port(port, timeout_s=5.0)
    udp = free_port(kind="udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", udp))


def test_free_port_draws_from_the_reserved_range_when_one_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # The second pytest process of `make test` (tests/run_suite.py): ports outside the kernel's
    # ephemeral range. 30000-30002: three ports, one of them taken here (below the range that
    # tests/run_suite.py reserves by default, 30768-32767, for the process beside this one).
    monkeypatch.setenv(PORT_RANGE_ENV, "30000-30002")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        try:
            taken.bind(("127.0.0.1", 30001))
        except OSError:
            pytest.fail("port 30001 is in use on this machine: pick another range for this test")
        got = [free_port() for _ in range(4)]
        assert set(got) == {30000, 30002} and got[0] != got[1]  # in turn, never the taken one
        udp = free_port(kind="udp")  # UDP 30001 is free: the TCP socket does not hold it
        assert 30000 <= udp <= 30002
        monkeypatch.setenv(PORT_RANGE_ENV, "30001-30001")
        with pytest.raises(RuntimeError, match=r"no free tcp port on 127\.0\.0\.1 in \w+=30001-30001"):
            free_port()
    for bad in ("30000", "x-y", "80-90", "30002-30001", "65000-65536"):
        monkeypatch.setenv(PORT_RANGE_ENV, bad)
        with pytest.raises(ValueError, match=PORT_RANGE_ENV):
            free_port()


def test_managed_process_starts_waits_and_stops(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    toy = ManagedProcess("toy", [sys.executable, "-c", TOY, str(ready)], log=tmp_path / "toy.log")
    toy.start()
    try:
        toy.wait_ready(ready.exists, timeout_s=30.0, what="the toy ready")
        assert toy.running and toy.pid is not None and toy.returncode is None
    finally:
        toy.stop(timeout_s=10.0)
    assert not toy.running and toy.returncode == 3  # it got SIGTERM (its handler exits 3)
    assert "toy starting" in toy.log_tail()
    # Started again: same command, the log appended to.
    toy.start()
    toy.kill()
    assert toy.returncode == -signal.SIGKILL
    assert toy.log_tail().count("toy starting") >= 1


def test_a_service_that_exits_while_awaited_fails_at_once_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('bind: Address already in use', flush=True); sys.exit(1)"
    toy = ManagedProcess("toy", [sys.executable, "-c", code], log=tmp_path / "toy.log")
    toy.start()
    t0 = time.monotonic()
    with pytest.raises(ProcessExited, match="Address already in use") as err:
        toy.wait_ready(lambda: False, timeout_s=60.0, what="never")
    assert err.value.returncode == 1 and time.monotonic() - t0 < 30.0


def test_no_services_run_refuses_to_start_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_SERVICES_ENV, "1")
    toy = ManagedProcess("mosquitto", [sys.executable, "-c", "pass"], log=tmp_path / "x.log")
    with pytest.raises(ServicesDisabled, match="belongs in tests/integration"):
        toy.start()
    assert toy.proc is None
