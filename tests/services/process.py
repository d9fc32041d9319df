"""One service process of a test, started, waited for, and stopped in one way."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.services.wait import eventually

T = TypeVar("T")
NO_SERVICES_ENV = "NETQOS_TEST_NO_SERVICES"
INSTALL_HINT = "run `make test` or `bash deploy/ci/install-system-deps.sh`"


class ServicesDisabled(RuntimeError):
    """A service was started while the run says it needs none (`make unit`)."""


class ProcessExited(RuntimeError):
    """The service's process ended while it was awaited."""

    def __init__(self, name: str, returncode: int, log_tail: str) -> None:
        super().__init__(f"{name} exited with status {returncode}; log tail:\n{log_tail}")
        self.name = name
        self.returncode = returncode
        self.log = log_tail


def binary(name: str, *candidates: str, hint: str = INSTALL_HINT) -> str:
    """The path of an executable: on PATH, else the first of `candidates` that exists
    (Debian's sbin folders are not on every PATH). Missing is an error, never a skip."""
    for path in (shutil.which(name), *candidates):
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError(f"{name} is not installed: {hint}")


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """`sig` (SIGTERM), then SIGKILL if the process has not exited after `timeout_s`.

    SIGCONT follows `sig`: a stopped (SIGSTOP) process handles it only once continued."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


class ManagedProcess:
    """A service's process: `argv` with its output appended to `log`, in `cwd`.

    ``start()`` spawns it (again after a stop: same command, same log), ``wait_ready(check)``
    waits until `check` says it serves, ``stop()`` sends `stop_signal` and SIGKILL after
    `stop_timeout_s`, ``kill()`` is a crash. `popen` holds further Popen arguments (user,
    group, ...)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout_s: float = 10.0,
        popen: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.stop_timeout_s = stop_timeout_s
        self.popen = dict(popen or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended; None while it runs (or before start)."""
        return None if self.proc is None else self.proc.poll()

    def start(self) -> subprocess.Popen[bytes]:
        if os.environ.get(NO_SERVICES_ENV):
            raise ServicesDisabled(
                f"this test starts {self.name}, but {NO_SERVICES_ENV} is set (`make unit`): a test that"
                " needs a service belongs in tests/integration or carries the `services` marker"
            )
        if self.running:
            raise RuntimeError(f"{self.name} is running already (pid {self.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the descriptor: ours is closed at once.
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                **self.popen,
            )
        return self.proc

    def wait_ready(
        self, check: Callable[[], T], *, timeout_s: float, what: str, interval_s: float = 0.05
    ) -> T:
        """Until `check` is truthy; on the process's exit or on timeout, stop it and raise."""
        try:
            return eventually(check, timeout_s=timeout_s, what=what, interval_s=interval_s, process=self)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float | None = None) -> None:
        if self.proc is not None:
            terminate(self.proc, self.stop_timeout_s if timeout_s is None else timeout_s, self.stop_signal)

    def kill(self) -> None:
        """SIGKILL, like a crash: the service saves nothing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=self.stop_timeout_s)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"
