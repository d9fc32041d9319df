"""tests/run_suite.py, `make test`'s two pytest processes, run on a toy suite of its own: the
`idle` tests run beside the others and at the same time, with ports outside the kernel's
ephemeral range and a temporary folder of their own; the run fails if either process fails,
and shows both outputs and both summary lines."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.run_suite import reserved_port_range
from tests.services import NO_SERVICES_ENV

ROOT = Path(__file__).resolve().parents[2]

TOY_INI = """[pytest]
markers =
    idle: waits
"""

# Each side announces itself with a file and waits (bounded) for the other's: they pass only
# if both run at the same time. TOY_FAIL=main|idle makes that side fail on purpose.
TOY_TESTS = """
import os, time
from pathlib import Path
import pytest
from tests.services.ports import free_port

HERE = Path(__file__).parent

def meet(me, other):
    (HERE / f"{me}.started").touch()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (HERE / f"{other}.started").exists():
        time.sleep(0.05)
    assert (HERE / f"{other}.started").exists(), f"{other} did not run at the same time"

def test_main_side(tmp_path):
    meet("main", "idle")
    assert "NETQOS_TEST_PORTS" not in os.environ
    (HERE / "main.tmp").write_text(str(tmp_path))
    assert os.environ.get("TOY_FAIL") != "main", "main fails on purpose"

@pytest.mark.idle
def test_idle_side(tmp_path):
    meet("idle", "main")
    low, high = (int(x) for x in os.environ["NETQOS_TEST_PORTS"].split("-"))
    ports = [free_port() for _ in range(3)]
    (HERE / "idle.ports").write_text(f"{low} {high} " + " ".join(map(str, ports)))
    (HERE / "idle.tmp").write_text(str(tmp_path))
    assert os.environ.get("TOY_FAIL") != "idle", "idle fails on purpose"
"""


# The toy needs none of the plugins installed here; loading them is most of its time.
NO_PLUGINS = [f"-pno:{p}" for p in ("cacheprovider", "asyncio", "anyio", "hypothesispytest", "schemathesis")]


def run_toy(tmp_path: Path, fail: str = "") -> subprocess.CompletedProcess[str]:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text(TOY_INI)
    (suite / "test_toy.py").write_text(TOY_TESTS)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOY_FAIL=fail)
    env.pop(NO_SERVICES_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "tests.run_suite", "--junit-dir", str(tmp_path / "junit"), *NO_PLUGINS],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ephemeral() -> tuple[int, int]:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return low, high


def test_both_pass_at_the_same_time_apart_and_both_are_reported(tmp_path: Path) -> None:
    out = run_toy(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    suite = tmp_path / "suite"
    # Ports of the idle process: from its range, outside the kernel's ephemeral range, distinct.
    low, high, *ports = (int(x) for x in (suite / "idle.ports").read_text().split())
    eph_low, eph_high = ephemeral()
    assert high < eph_low or low > eph_high
    assert all(low <= p <= high for p in ports) and len(set(ports)) == 3
    # Temporary folders: the idle process's under its own basetemp, not the main suite's.
    main_tmp, idle_tmp = (suite / "main.tmp").read_text(), (suite / "idle.tmp").read_text()
    assert "netqos-idle-tests-" in idle_tmp and "netqos-idle-tests-" not in main_tmp
    # Both outputs and both summary lines, the idle process's after the main suite's.
    text = out.stdout
    assert "output of the `idle` tests" in text and "test_toy.py" in text
    assert "main suite (-m 'not idle'): exit 0:" in text and "idle tests (-m 'idle'): exit 0:" in text
    assert text.count("1 passed, 1 deselected") == 4  # each process's own line, and again in the summary
    assert "s CPU (" in text
    for name, test in (("main", "test_main_side"), ("idle", "test_idle_side")):
        cases = ET.parse(tmp_path / "junit" / f"{name}.xml").getroot().iter("testcase")
        assert [c.get("name") for c in cases] == [test]


@pytest.mark.parametrize(("fail", "status_line"), [("main", "main suite"), ("idle", "idle tests")])
def test_a_failure_in_either_process_fails_the_run(tmp_path: Path, fail: str, status_line: str) -> None:
    out = run_toy(tmp_path, fail)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{fail} fails on purpose" in out.stdout  # its traceback is shown
    summary = out.stdout[out.stdout.index("summary of both pytest processes") :]
    assert f"{status_line} (-m '{'not idle' if fail == 'main' else 'idle'}'): exit 1:" in summary
    assert "1 failed, 1 deselected" in summary
    # The other process ran to its end and passed.
    assert "exit 0:" in summary and "1 passed, 1 deselected" in summary


def test_the_reserved_range_lies_outside_the_ephemeral_range() -> None:
    # Below it when there is room (Linux's default 32768-60999), else above it, else none.
    assert reserved_port_range((32768, 60999)) == (30768, 32767)
    assert reserved_port_range((1224, 60999)) == (1024, 1223)  # just enough room below: 200 ports
    assert reserved_port_range((1223, 60999)) == (61000, 62999)  # 199 below: above instead
    assert reserved_port_range((1024, 65335)) == (65336, 65535)
    assert reserved_port_range((1024, 65336)) is None  # 199 above: one process for everything


def test_a_marker_expression_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.run_suite", "-m", "slow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "-m: this script sets the marker expressions" in out.stderr
