"""`make test`'s pytest: the main suite, and beside it a second pytest process for the tests
marked `idle`.

An `idle` test spends minutes of wall-clock time waiting with almost no CPU (the ten-minute
probe outage of tests/integration/test_probe_agent_outage_10min.py): run in the main suite it
adds its whole duration to CI; run beside it, almost nothing. ::

    python -m tests.run_suite [--junit-dir DIR] [PYTEST ARGS...]

runs ``pytest -m "not idle" ARGS`` in this terminal and, at the same time,
``pytest -m idle ARGS`` with its output in a log file that is printed in full once both have
ended, followed by both summary lines. The exit status is 0 only if both passed (a process
that selected no test at all counts as passed); otherwise the main suite's status if it
failed, else the idle process's.

What keeps the two apart:

* ports: the idle process draws its ports (``free_port``) from a range outside the kernel's
  ephemeral range (NETQOS_TEST_PORTS), so no test of the main suite can be handed a port it
  uses, or has released for a while to take again (its broker, stopped for the outage). The
  other way round, its own ephemeral ports (a listener held open, a few connections a second
  lasting milliseconds) are a sliver of what the main suite itself takes all the time;
* files: the idle process has its own pytest temporary folder (``--basetemp``) and no pytest
  cache (the main suite's ``.pytest_cache`` stays the main suite's); services it starts are
  its own (their own ports and folders), like every fixture's;
* the numba cache is only read: ``make warm`` filled it before, and numba replaces its cache
  files atomically anyway.

The idle process's CPU time is reported at the end: an `idle` test must stay mostly asleep,
or it slows the main suite's tests down; above IDLE_CPU_WARN_RATIO of one core this says so.
Where no port range outside the ephemeral one exists, everything runs in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from tests.services.ports import PORT_RANGE_ENV
from tests.services.process import terminate

IDLE_MARKER = "idle"
# pytest's exit status when its selection holds no test: a process with nothing to run passed.
NO_TESTS_COLLECTED = 5
# The reserved range's size, and the smallest that is still worth using.
RESERVED_PORTS = 2000
MIN_RESERVED_PORTS = 200
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# More than this share of one core over its run and the idle process is not idle.
IDLE_CPU_WARN_RATIO = 0.2


def ephemeral_range(path: Path = EPHEMERAL_RANGE) -> tuple[int, int]:
    """The kernel's ephemeral port range (bind to port 0, outgoing connections)."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def reserved_port_range(ephemeral: tuple[int, int]) -> tuple[int, int] | None:
    """A range of ports for the idle process that the kernel never hands out: just below the
    ephemeral range, else just above it; None if neither side has MIN_RESERVED_PORTS."""
    low, high = ephemeral
    if low - 1024 >= MIN_RESERVED_PORTS:
        return max(1024, low - RESERVED_PORTS), low - 1
    if 65535 - high >= MIN_RESERVED_PORTS:
        return high + 1, min(65535, high + RESERVED_PORTS)
    return None


def summary_line(text: str) -> str:
    """pytest's last line (`=== 3 passed in 1.2s ===`), or a note that there is none."""
    for line in reversed(text.splitlines()):
        if line.strip("= "):
            return line.strip("= ")
    return "(no output)"


def passed(status: int) -> bool:
    return status in (0, NO_TESTS_COLLECTED)


@dataclass
class IdleRun:
    """The second pytest process: its Popen, log, temporary folder, start and end time and CPU use."""

    proc: subprocess.Popen[bytes]
    log: Path
    folder: Path
    started: float
    ended: float | None = None
    cpu_s: float | None = None

    def watch(self) -> None:
        """(A thread's:) when it ends, without reaping it, so that its wall time is its own."""
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        self.ended = time.monotonic()

    def running(self) -> bool:
        """Whether it still runs; an ended process is not reaped (wait() reads its CPU time)."""
        if self.proc.returncode is not None:
            return False
        return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def wait(self) -> int:
        """Its exit status; its CPU time (its children's included, as far as they were waited
        for: mosquitto, PostgreSQL, ...) into `cpu_s`."""
        if self.proc.returncode is None:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_s = usage.ru_utime + usage.ru_stime
            if self.ended is None:
                self.ended = time.monotonic()
        return self.proc.returncode


def pytest_argv(marker_expr: str | None, args: list[str], junit: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "pytest"]
    if marker_expr is not None:
        argv += ["-m", marker_expr]
    if junit is not None:
        argv.append(f"--junitxml={junit}")
    return argv + args


def start_idle(args: list[str], ports: tuple[int, int], junit: Path | None) -> IdleRun:
    folder = Path(tempfile.mkdtemp(prefix="netqos-idle-tests-"))
    log = folder / "pytest.log"
    # Its own temporary folder, and no pytest cache: `.pytest_cache` stays the main suite's.
    own_files = [f"--basetemp={folder / 'tmp'}", "-p", "no:cacheprovider"]
    argv = [*pytest_argv(IDLE_MARKER, args, junit), *own_files]
    env = dict(os.environ, **{PORT_RANGE_ENV: f"{ports[0]}-{ports[1]}"})
    with log.open("wb") as out:
        # Same process group as ours: a CI job's timeout that kills the group ends it too.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    idle = IdleRun(proc, log, folder, time.monotonic())
    threading.Thread(target=idle.watch, name="idle-watch", daemon=True).start()
    return idle


def banner(text: str) -> None:
    print(f"\n{'=' * 20} {text} {'=' * 20}", flush=True)


def relay(proc: subprocess.Popen[bytes]) -> str:
    """Copies `proc`'s output to ours as it comes (pytest's progress dots included); its last
    few kilobytes, for its summary line."""
    assert proc.stdout is not None
    out = sys.stdout.buffer
    tail = b""
    # Bounded by the pipe: os.read returns b"" once the process has closed its end.
    while chunk := os.read(proc.stdout.fileno(), 65536):
        out.write(chunk)
        out.flush()
        tail = (tail + chunk)[-8192:]
    proc.wait()
    return tail.decode(errors="replace")


def run(args: list[str], junit_dir: Path | None) -> int:
    def junit(name: str) -> Path | None:
        return junit_dir / f"{name}.xml" if junit_dir is not None else None

    if junit_dir is not None:
        junit_dir.mkdir(parents=True, exist_ok=True)
    ports = reserved_port_range(ephemeral_range())
    if ports is None:
        print(
            "run_suite: no port range outside the kernel's ephemeral one: one pytest process for all",
            flush=True,
        )
        return subprocess.call(pytest_argv(None, args, junit("main")))

    idle = start_idle(args, ports, junit("idle"))
    print(
        f"run_suite: the `{IDLE_MARKER}` tests run in a second pytest process (pid {idle.proc.pid}, ports"
        f" {ports[0]}-{ports[1]}); its output follows the main suite's (meanwhile in {idle.log})",
        flush=True,
    )
    main: subprocess.Popen[bytes] | None = None
    try:
        color = ["--color=yes"] if sys.stdout.isatty() else []
        main = subprocess.Popen(
            pytest_argv(f"not {IDLE_MARKER}", color + args, junit("main")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        main_tail = relay(main)
        main_status = main.wait()
        if idle.running():
            banner(f"main suite done; waiting for the `{IDLE_MARKER}` tests")
        idle_status = idle.wait()
    finally:
        # Interrupted (Ctrl-C, SIGTERM): neither pytest outlives us.
        if main is not None:
            terminate(main)
        terminate(idle.proc)
    wall_s = (idle.ended or time.monotonic()) - idle.started
    idle_output = idle.log.read_text(errors="replace")
    banner(f"output of the `{IDLE_MARKER}` tests (second pytest process)")
    print(idle_output, end="" if idle_output.endswith("\n") else "\n")
    banner("summary of both pytest processes")
    print(f"main suite (-m 'not {IDLE_MARKER}'): exit {main_status}: {summary_line(main_tail)}")
    print(f"{IDLE_MARKER} tests (-m '{IDLE_MARKER}'): exit {idle_status}: {summary_line(idle_output)}")
    cpu_s = idle.cpu_s if idle.cpu_s is not None else 0.0
    ratio = cpu_s / wall_s if wall_s > 0 else 0.0
    print(f"{IDLE_MARKER} tests: {wall_s:.0f} s wall, {cpu_s:.1f} s CPU ({ratio:.1%} of one core)")
    if wall_s >= 60 and ratio > IDLE_CPU_WARN_RATIO:
        print(
            f"WARNING: the `{IDLE_MARKER}` tests used {ratio:.0%} of a core, slowing the main suite down:"
            f" a test that works rather than waits does not belong under `{IDLE_MARKER}`"
        )
    if junit_dir is not None:
        print(f"JUnit: {junit('main')}, {junit('idle')}")
    if passed(idle_status):
        shutil.rmtree(idle.folder, ignore_errors=True)
    else:
        print(f"the `{IDLE_MARKER}` tests' temporary files are kept in {idle.folder}")
    sys.stdout.flush()
    if not passed(main_status):
        return main_status
    return 0 if passed(idle_status) else idle_status


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # A CI job's timeout: end as on Ctrl-C, so that `finally` stops both pytest processes.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The test suite: the main pytest process, and the `idle` tests in a second one beside it;"
        " other arguments go to both pytest processes.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--junit-dir", type=Path, default=None, help="write main.xml and idle.xml (JUnit) here"
    )
    ns, pytest_args = parser.parse_known_args(argv)
    if any(a.startswith("-m") for a in pytest_args):
        parser.error("-m: this script sets the marker expressions (`not idle`, `idle`); run pytest for more")
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        return run(pytest_args, ns.junit_dir)
    except KeyboardInterrupt:
        print("run_suite: interrupted; both pytest processes stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
